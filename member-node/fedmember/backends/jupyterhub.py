"""The ``jupyterhub`` backend: launches through a JupyterHub's REST API with a service token.

Each launch gets its own hub user (``user_prefix`` + a random suffix): create the
user, start its server with ``user_options`` (the image or profile chosen by the
first matching rule, else ``default_user_options``), follow the spawn's progress
event stream (``launching`` events), then create an API token for that user,
scoped to its own server (``access:servers!user=<name>``, hub 2.0+), and answer
``ready`` with ``{public_hub_url}/user/<name>/`` and that token.

The hub does not build images, so the member serves only what it is configured for: the
repo picks an image/profile through ``rules`` (``match`` is a regular expression on the
repo key, ``gh:org/repo``). A repo that no rule matches is refused with 501 (the broker
fails over to another member) unless ``unmatched = "default"`` sends it to
``default_user_options``. The member advertises only ``providers`` (git-based ones, whose
repositories it can check) and, with ``unmatched = "refuse"``, the ``serves`` globs (``gh:org/*``)
naming the repos its rules take, so the broker does not try it for others; and before starting anything it checks with ``git ls-remote``
that the repository and ref exist (404 otherwise; 503 when git cannot reach the server), so
a nonexistent repository never ends in a ready, empty server.

On JupyterHub 5 and later a single-user server refuses ``?token=`` in URLs unless its
environment has ``JUPYTERHUB_ALLOW_TOKEN_IN_URL=1``; the browser lands on the launched
server with its token in the URL (as BinderHub's launches do), so the hub's config must set
``c.Spawner.environment = {"JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}`` (README, "Beside a
JupyterHub"; ``fedmember init --backend jupyterhub`` prints it).
String values in user options may use ``$repo_url``, ``$ref``, ``$provider``,
``$repo`` and ``$launch_id`` (``string.Template``: no attribute access, no code).

Agent restarts keep users' servers: ``detach()`` leaves them running, and ``adopt()`` finds
them again through the hub (this agent's ``user_prefix``; the launch id is in the note of
the token made at ``ready``) and removes the ones that never became ready.

Failures: ``max_servers`` reached → 429 before any hub call that changes state;
hub unreachable → 503; the spawn failing → 503; no ``ready`` within
``start_timeout`` → 504; anything else from the hub → 502. A launch that fails
after its user was created removes the user again.

The service token needs the scopes ``admin:users``, ``admin:servers``,
``list:users``, ``read:users``, ``tokens`` and ``access:servers`` (see the README, "Beside a JupyterHub").
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
import secrets
from string import Template
from typing import Any, AsyncIterator, ClassVar, Literal
from urllib.parse import quote

import aiohttp
from pydantic import Field, HttpUrl, model_validator

from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repoglob import MAX_SERVES, RepoGlob
from fedproto.repospec import PROVIDERS, RepoSpec
from fedproto.status import Capacity, HealthCheck
from fedproto.tls import client_context
from fedproto.urlpolicy import AddressPolicy

from fedproto.failures import Failure

from .base import Backend, BackendConfig, BackendContext, RepoRule, failed, first_match
from .gitfetch import FetchError, GitFetcher
from .jupyterhub_api import HubAPI, HubError
from .secrets import SecretConfigError, TokenSource
from .sse import StreamEnded, StreamTimeout, iter_sse_json

log = logging.getLogger(__name__)

# The note of the token made at ``ready``: how a restarted agent maps a hub user back to its launch.
_TOKEN_NOTE = "binder-federation launch "


class UserOptionsRule(RepoRule):
    """Launch repos whose key matches ``match`` with these user options."""

    user_options: dict[str, Any] = Field(description="user_options for the spawner, e.g. {\"image\": ..., \"profile\": ...}.")


class JupyterHubConfig(BackendConfig):
    """Settings of the ``jupyterhub`` backend."""

    kind: Literal["jupyterhub"] = "jupyterhub"
    hub_api_url: HttpUrl = Field(description="The hub's REST API, e.g. http://hub:8081/hub/api (may be an internal address).")
    public_hub_url: HttpUrl | None = Field(
        default=None, description="Where browsers reach the hub (its proxy); server URLs are built on it. Default: the member's public_url."
    )
    token: TokenSource = Field(description="Where the service token is: token_file or token_env (never the token itself).")
    user_prefix: str = Field(
        default="fed-", pattern=r"^[a-z][a-z0-9-]{0,30}$", description="Prefix of the hub users this agent creates; it also finds them again."
    )
    max_servers: int = Field(default=10, ge=0, description="Servers this agent may run at once on the hub.")
    start_timeout: float = Field(default=300.0, gt=0, description="Seconds from the start request to a ready server before failing with 504.")
    stop_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for a server to stop before its user is deleted anyway.")
    request_timeout: float = Field(default=10.0, gt=0, description="Seconds for each hub API call.")
    token_lifetime: int = Field(default=86400, gt=0, description="Lifetime in seconds of the token handed to the browser.")
    rules: list[UserOptionsRule] = Field(default_factory=list, description="Repo → user_options rules, first match wins.")
    unmatched: Literal["refuse", "default"] = Field(
        default="refuse",
        description='A repo no rule matches: "refuse" it (501; the broker tries another member) or launch it with default_user_options.',
    )
    default_user_options: dict[str, Any] = Field(
        default_factory=dict, description='user_options for repos no rule matches, when unmatched = "default".'
    )
    providers: list[Literal["gh", "gl", "git"]] = Field(
        default_factory=lambda: ["gh", "gl", "git"],
        description="Providers this member advertises and serves; only git-based ones, whose repositories it checks exist.",
    )
    check_repository: bool = Field(
        default=True, description="Check with git ls-remote that the repository and ref exist before starting a server."
    )
    git_timeout: float = Field(default=30.0, gt=0, description="Seconds for that check.")
    serves: list[RepoGlob] | None = Field(
        default=None, max_length=MAX_SERVES,
        description='Repo-key globs (`gh:org/*`; `*` the only wildcard) of what the rules serve, advertised so the broker '
                    'sends only those repos here; only with unmatched = "refuse". None: advertise every repo of providers.',
    )

    @model_validator(mode="after")
    def _serves_only_when_refusing(self) -> JupyterHubConfig:
        # With unmatched = "default" every repo launches, so a narrower claim would turn launches away.
        if self.serves is not None and self.unmatched != "refuse":
            raise ValueError('serves narrows what the member claims: it needs unmatched = "refuse"')
        return self


class JupyterHubBackend(Backend):
    """Starts one hub user and server per launch. See the module docstring."""

    kind: ClassVar[str] = "jupyterhub"
    providers: ClassVar[tuple[str, ...]] = PROVIDERS
    Config: ClassVar[type[BackendConfig]] = JupyterHubConfig
    config: JupyterHubConfig

    def __init__(self, config: BackendConfig, context: BackendContext) -> None:
        super().__init__(config, context)
        self._session: aiohttp.ClientSession | None = None
        self._servers: dict[str, str] = {}  # launch id -> hub user name
        self._starting: set[str] = set()
        self._version: str | None = None
        public = str(self.config.public_hub_url or context.public_url or self.config.hub_api_url)
        self._public = public.rstrip("/").removesuffix("/hub/api")
        # Advertise only what this member serves (the status ad reads ``providers``).
        self.providers = tuple(self.config.providers)  # type: ignore[misc]
        # ...and, when unmatched repos are refused, which repos: the broker cannot run the rules'
        # regexes (a member's pattern is not trusted there), so the operator states them as globs.
        # The 501 refusal stays the backstop for a repo the globs admit and no rule matches.
        if self.config.unmatched == "refuse" and self.config.serves is not None:
            self.serves = tuple(self.config.serves)
        self._git = GitFetcher(timeout=self.config.git_timeout, allow_file=context.dev, ca_bundle=context.ca_bundle,
                               destinations=AddressPolicy.of(dev=context.dev, allow=context.fetch_allow))

    def _hub(self) -> HubAPI:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=client_context(self.context.ca_bundle))
            self._session = aiohttp.ClientSession(connector=connector)
        token = self.config.token.read("JupyterHub service")
        return HubAPI(self._session, str(self.config.hub_api_url), token, self.config.request_timeout)

    async def detach(self) -> None:
        """The agent restarts: leave every ready server (and its hub user) for the next agent to adopt."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def adopt(self) -> list[str]:
        """Take over this prefix's ready servers, found through the hub: the launch id is in the
        note of the token made at ``ready``. A server without one never became ready (its agent
        died mid-launch): it is removed."""
        try:
            hub = self._hub()
            active = await self._active(hub)
        except (HubError, SecretConfigError) as exc:
            log.warning("could not look for servers a previous agent left: %s", exc)
            return []
        adopted = []
        for name in active:
            try:
                notes = await hub.token_notes(name)
            except HubError as exc:
                log.warning("could not read the tokens of hub user %s: %s", name, exc)
                continue
            launch_id = next((n.removeprefix(_TOKEN_NOTE) for n in notes if n.startswith(_TOKEN_NOTE)), None)
            if launch_id and not active[name]:
                self._servers[launch_id] = name
                adopted.append(launch_id)
            else:
                await self._remove_quietly(hub, name)
        return adopted

    async def stop(self) -> None:
        for launch_id in list(self._servers):
            try:
                await self.stop_server(launch_id)
            except (HubError, SecretConfigError) as exc:
                log.warning("could not remove the server of %s at shutdown: %s", launch_id, exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _user_options(self, repo: RepoSpec, request: LaunchRequest) -> dict[str, Any] | None:
        rule = first_match(self.config.rules, repo)
        default = self.config.default_user_options if self.config.unmatched == "default" else None
        options = rule.user_options if rule is not None else default
        if options is None:
            return None
        values = {"repo_url": repo.repo_url, "ref": repo.ref, "provider": repo.provider, "repo": repo.repo, "launch_id": request.launch_id}
        return {k: Template(v).safe_substitute(values) if isinstance(v, str) else v for k, v in options.items()}

    async def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        try:
            hub = self._hub()
        except SecretConfigError as exc:
            yield failed(f"member misconfigured: {exc}", Failure.UNAVAILABLE)
            return
        options = self._user_options(repo, request)
        if options is None:
            # Not the repository's fault: another member may serve it, so the broker fails over.
            yield failed(f"this member serves no image for {repo.key} (no rule matches it)", Failure.NOT_SUPPORTED)
            return
        if self.config.check_repository:
            try:
                await self._git.check_remote(repo)
            except FetchError as exc:
                yield failed(str(exc), exc.status_code)
                return
        try:
            active = await self._active(hub)
        except HubError as exc:
            yield failed(str(exc), exc.status_code)
            return
        if len(set(active) | self._starting) >= self.config.max_servers:
            yield failed(f"all {self.config.max_servers} servers of this member are in use", Failure.CAPACITY)
            return
        name = f"{self.config.user_prefix}{secrets.token_hex(5)}"
        # aclosing: a consumer that goes away mid-launch gets the user removed now, not at GC.
        async with aclosing(self._spawn(hub, name, request, repo, options)) as events:
            async for event in events:
                yield event

    async def _spawn(self, hub: HubAPI, name: str, request: LaunchRequest, repo: RepoSpec, options: dict[str, Any]) -> AsyncIterator[LaunchEvent]:
        self._starting.add(name)
        self._servers[request.launch_id] = name
        ready = False
        try:
            yield LaunchEvent(phase="launching", message="Requesting a server from JupyterHub...\n")
            await hub.create_user(name)
            await hub.start_server(name, options)
            deadline = asyncio.get_running_loop().time() + self.config.start_timeout
            async with aclosing(self._follow_progress(hub, name, deadline)) as progress:
                async for event in progress:
                    yield event
            token = await hub.create_token(name, note=f"{_TOKEN_NOTE}{request.launch_id}", expires_in=self.config.token_lifetime, scopes=await self._token_scopes(hub, name))
            ready = True
            yield self._ready_event(name, token, repo, options)
        except HubError as exc:
            yield failed(str(exc), exc.status_code)
        except (StreamTimeout, asyncio.TimeoutError):
            yield failed(f"the server did not start within {self.config.start_timeout:.0f} s", Failure.TIMEOUT)
        finally:
            self._starting.discard(name)
            if not ready:
                self._servers.pop(request.launch_id, None)
                await self._remove_quietly(hub, name)

    async def _follow_progress(self, hub: HubAPI, name: str, deadline: float) -> AsyncIterator[LaunchEvent]:
        async with hub.progress(name) as response:
            try:
                async for data in iter_sse_json(response, deadline=deadline):
                    message = str(data.get("message") or "").rstrip("\n")
                    if data.get("failed"):
                        raise HubError(f"the server failed to start: {message}", status_code=503)
                    if message:
                        yield LaunchEvent(phase="launching", message=message + "\n")
                    if data.get("ready"):
                        return
            except StreamEnded:
                raise HubError("JupyterHub ended the progress stream before the server was ready") from None

    async def _token_scopes(self, hub: HubAPI, name: str) -> list[str] | None:
        # Scopes exist from JupyterHub 2.0; an older hub rejects the field, and its tokens are user-wide.
        version = self._version or await hub.version()
        self._version = version
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        return [f"access:servers!user={name}"] if major >= 2 else None

    def _ready_event(self, name: str, token: str, repo: RepoSpec, options: dict[str, Any]) -> LaunchEvent:
        url = f"{self._public}/user/{quote(name, safe='')}/"
        image = options.get("image") or options.get("profile")
        return LaunchEvent(
            phase="ready", message=f"server running at {url}\n", url=url, token=token,
            image=str(image) if image else None, repo_url=repo.repo_url, binder_request=repo.binder_request,
            binder_launch_host=f"{self._public}/",
        )

    async def _remove_quietly(self, hub: HubAPI, name: str) -> None:
        try:
            await self._remove(hub, name)
        except HubError as exc:
            log.warning("could not remove hub user %s: %s", name, exc)

    async def _remove(self, hub: HubAPI, name: str) -> None:
        """Stop the server and delete the user; "not found" counts as done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.stop_timeout
        while True:
            # The hub refuses (400) to delete a user whose server is mid-spawn or mid-stop, and
            # JupyterHub 5 answers 500 when the spawn is still pending: ask it to stop, then retry.
            try:
                if await hub.delete_user(name) in (204, 404):
                    return
            except HubError as exc:
                if exc.hub_status != 500 or loop.time() > deadline:
                    raise
            await hub.stop_server(name)
            if loop.time() > deadline:
                raise HubError(f"hub user {name} was still busy after {self.config.stop_timeout:.0f} s")
            await asyncio.sleep(0.25)

    async def stop_server(self, launch_id: str) -> bool:
        name = self._servers.pop(launch_id, None)
        if name is None:
            return False
        await self._remove(self._hub(), name)
        return True

    async def _active(self, hub: HubAPI) -> dict[str, bool]:
        """This agent's users with an active server → whether it is still spawning."""
        active = {}
        for user in await hub.active_users():
            name = str(user.get("name", ""))
            if name.startswith(self.config.user_prefix):
                servers = user.get("servers") or {}
                active[name] = any((s or {}).get("pending") == "spawn" for s in servers.values())
        return active

    async def capacity(self) -> Capacity:
        try:
            active = await self._active(self._hub())
        except (HubError, SecretConfigError):
            return Capacity(total=0, used=0)
        building = sum(active.values()) + len(self._starting - set(active))
        return Capacity(total=self.config.max_servers, used=len(active) - sum(active.values()), building=building)

    async def health(self) -> list[HealthCheck]:
        try:
            hub = self._hub()
            self._version = await hub.version()
            who = await hub.whoami()
        except (HubError, SecretConfigError) as exc:
            return [HealthCheck(service="JupyterHub API", ok=False, detail={"error": str(exc)})]
        detail = {"version": self._version, "as": str(who.get("name", "")), "kind": str(who.get("kind", ""))}
        return [HealthCheck(service="JupyterHub API", ok=True, detail=detail)]

    def versions(self) -> dict[str, str]:
        return {"jupyterhub": self._version} if self._version else {}
