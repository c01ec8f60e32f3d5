"""The ``binderhub`` backend: relays an existing BinderHub's ``/build`` stream, ``/health`` and ``/versions``.

Launch: ``GET {url}/build/{provider}/{spec}`` with ``Accept: text/event-stream``.
Every event is passed on with BinderHub's own fields (``imageName``, the build
pod's ``Pending``/``Running``/``Succeed``/``Building`` phases, the ``ready``
fields). BinderHub keeps the stream open after ``ready`` (up to a minute), so the
connection is closed here as soon as ``ready`` or ``failed`` arrives.

Failures, so the broker knows whether to try another member:

* HTTP 429 from BinderHub, a ``failed`` event with ``status_code`` 429 (its per-IP
  rate limit) or a quota message ("Too many users ...") → ``failed``/429.
* HTTP 503 → 503; any other 5xx, an unexpected 4xx (a wrong URL or token is the
  site's fault, not the user's) or a non-event-stream answer → 502.
* Connection refused, DNS or TLS errors → 503; no terminal event within
  ``launch_timeout`` → 504; the stream closing before ``ready`` → 502.
* A bare ``failed`` without ``status_code`` is the repo's fault: 404 when BinderHub
  cannot find the repo or ref, 422 (unbuildable) otherwise (see :mod:`.binderhub_events`).

The codes are those of the one failure table, :mod:`fedproto.failures`.

Stopping a server: BinderHub's API cannot delete one launch. When ``hub_api_url``
and a hub token are configured, ``stop_server`` deletes the user's server through
the JupyterHub API (the user name is in the ``ready`` url, ``/user/<name>/``);
without them it returns False and BinderHub's idle culler ends the server.

Capacity: from the ``Pod quota`` check of ``/health`` when BinderHub reports one;
otherwise ``max_servers``, with ``used`` counting the servers launched through this
agent in the last ``server_lifetime`` seconds (BinderHub culls them unseen).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator, ClassVar, Literal
from urllib.parse import quote

import aiohttp
from pydantic import Field, HttpUrl
from yarl import URL

from fedproto.failures import Failure
from fedproto.launch import BUILD_TERMINAL_PHASES, TERMINAL_PHASES, LaunchEvent, LaunchRequest
from fedproto.repospec import PROVIDERS, RepoSpec
from fedproto.status import Capacity, HealthCheck
from fedproto.tls import client_context, describe_failure

from .base import Backend, BackendConfig, BackendContext, failed
from .binderhub_events import BinderHubHealth, parse_health, quota_capacity, server_user, to_launch_event, versions_of
from .secrets import SecretConfigError, TokenSource
from .sse import StreamEnded, StreamTimeout, iter_sse_json, json_or_none

log = logging.getLogger(__name__)


class BinderHubConfig(BackendConfig):
    """Settings of the ``binderhub`` backend."""

    kind: Literal["binderhub"] = "binderhub"
    url: HttpUrl = Field(description="BinderHub's base URL, e.g. https://binder.example.org/ (its /build, /health, /versions).")
    api_token: TokenSource = Field(
        default_factory=TokenSource,
        description="Token sent as `Authorization: token ...` when BinderHub requires one (API-only mode behind hub auth).",
    )
    request_timeout: float = Field(
        default=3.0, gt=0,
        description="Seconds for /health, /versions, hub calls and connecting to /build. Keep it below the broker's "
        "health.timeout (5 s by default), so a hung BinderHub shows as an unhealthy BinderHub, not a silent agent.",
    )
    providers: list[str] | None = Field(
        default=None,
        description="Provider prefixes this BinderHub serves (its repo_providers), e.g. ['gh', 'git']. Unset: read "
        "from BinderHub's /_config at start, else every provider. A launch for another provider fails over.",
    )
    launch_timeout: float = Field(default=900.0, gt=0, description="Seconds from request to `ready`/`failed` before the launch fails with 504.")
    health_cache_seconds: float = Field(default=5.0, ge=0, description="Reuse a /health answer this long (health and capacity share it).")
    max_servers: int = Field(default=100, ge=0, description="Capacity reported when BinderHub's /health has no Pod quota check.")
    server_lifetime: float = Field(
        default=3600.0, gt=0, description="Without a Pod quota check, count a launched server as running this many seconds."
    )
    hub_api_url: HttpUrl | None = Field(
        default=None, description="The JupyterHub API behind BinderHub (…/hub/api); lets DELETE stop a launched server."
    )
    hub_token: TokenSource = Field(
        default_factory=TokenSource, description="Hub API token with the admin:servers scope (a JupyterHub service token)."
    )


@dataclass
class _Launched:
    user: str | None
    url: str
    started: float


class BinderHubBackend(Backend):
    """Launches through a BinderHub. See the module docstring for the failure mapping."""

    kind: ClassVar[str] = "binderhub"
    providers: ClassVar[tuple[str, ...]] = PROVIDERS
    Config: ClassVar[type[BackendConfig]] = BinderHubConfig
    config: BinderHubConfig

    def __init__(self, config: BackendConfig, context: BackendContext) -> None:
        super().__init__(config, context)
        configured = self.config.providers
        # Per instance: what this BinderHub serves is what the status ad advertises.
        self.providers = tuple(p for p in PROVIDERS if p in configured) if configured is not None else PROVIDERS  # type: ignore[misc]
        self._base = str(self.config.url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._launched: dict[str, _Launched] = {}
        self._in_flight = 0
        self._health: tuple[float, BinderHubHealth] | None = None
        self._versions: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No total timeout: a launch stream lives for minutes; reads have their own deadline.
            timeout = aiohttp.ClientTimeout(total=None, connect=self.config.request_timeout)
            connector = aiohttp.TCPConnector(ssl=client_context(self.context.ca_bundle))
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._session

    async def start(self) -> None:
        await self._fetch_versions()
        if self.config.providers is None:
            await self._discover_providers()

    async def detach(self) -> None:
        """An agent restart leaves users' servers alone: BinderHub and its hub own them, not this process."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stop(self) -> None:
        if self.config.hub_api_url is not None and self.config.hub_token.configured:
            await asyncio.gather(*(self.stop_server(i) for i in list(self._launched)), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- launch ----------------------------------------------------------------------

    def _build_url(self, repo: RepoSpec) -> URL:
        """The /build URL of a parsed spec (RepoSpec refused '.'/'..' segments, so it names a repo, never another path)."""
        # '%' stays as sent: git specs arrive URL-escaped and BinderHub expects them so.
        spec = quote(repo.spec, safe="/%")
        return URL(f"{self._base}/build/{repo.provider}/{spec}", encoded=True)

    def _headers(self, request: LaunchRequest) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if request.client_ip:
            # BinderHub's per-IP rate limit and its logs read these (a BinderHub behind the agent
            # trusts them when its ``trusted_proxies`` / ingress lists the agent): without them every
            # federation launch came from the agent's address and shared one user's limit.
            headers["X-Forwarded-For"] = request.client_ip
            headers["X-Real-IP"] = request.client_ip
        if self.config.api_token.configured:
            headers["Authorization"] = f"token {self.config.api_token.read('BinderHub API')}"
        return headers

    def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        return self._relay(request, repo, params={}, terminal=TERMINAL_PHASES)

    async def build(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        # BinderHub's API-only mode builds without launching when asked with build_only=true.
        relay = self._relay(request, repo, params={"build_only": "true"}, terminal=BUILD_TERMINAL_PHASES | {"ready"})
        async with aclosing(relay) as events:
            async for event in events:
                yield event.model_copy(update={"phase": "built"}) if event.phase == "ready" else event

    async def _relay(
        self, request: LaunchRequest, repo: RepoSpec, params: dict[str, str], terminal: frozenset[str]
    ) -> AsyncIterator[LaunchEvent]:
        try:
            url = self._build_url(repo).update_query(params) if params else self._build_url(repo)
            headers = self._headers(request)
        except SecretConfigError as exc:
            yield failed(f"member misconfigured: {exc}", Failure.UNAVAILABLE)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.launch_timeout
        self._in_flight += 1
        try:
            # aclosing: when our consumer stops early, the upstream connection closes now, not at GC.
            async with aclosing(self._stream(url, headers, deadline, terminal)) as events:
                async for event in events:
                    if event.phase == "ready":
                        event = self._record_ready(request.launch_id, event)
                    yield event
        finally:
            self._in_flight -= 1

    async def _stream(self, url: URL, headers: dict[str, str], deadline: float, terminal: frozenset[str]) -> AsyncIterator[LaunchEvent]:
        try:
            response = await asyncio.wait_for(self._http().get(url, headers=headers), self.config.request_timeout)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            yield failed(f"BinderHub at {self._base} is unreachable: {describe_failure(exc)}", Failure.UNAVAILABLE)
            return
        # Closing (not releasing) drops the connection BinderHub would otherwise hold open.
        try:
            problem = _http_failure(response)
            if problem is not None:
                yield problem
                return
            async with aclosing(iter_sse_json(response, deadline=deadline)) as stream:
                async for data in stream:
                    event = to_launch_event(data)
                    yield event
                    if event.phase in terminal:
                        return
        except StreamTimeout:
            yield failed(f"BinderHub sent no ready event within {self.config.launch_timeout:.0f} s", Failure.TIMEOUT)
        except StreamEnded:
            yield failed("BinderHub closed the event stream before the launch finished", Failure.UPSTREAM)
        except aiohttp.ClientError as exc:
            yield failed(f"BinderHub connection broke: {exc.__class__.__name__}", Failure.UPSTREAM)
        finally:
            response.close()

    def _record_ready(self, launch_id: str, event: LaunchEvent) -> LaunchEvent:
        url = event.url or ""
        if url and not url.endswith("/"):
            url += "/"
            event = event.model_copy(update={"url": url})
        self._launched[launch_id] = _Launched(server_user(url), url, self.context.clock.now())
        return event

    # -- stop ------------------------------------------------------------------------

    async def stop_server(self, launch_id: str) -> bool:
        launched = self._launched.get(launch_id)
        if launched is None or launched.user is None or self.config.hub_api_url is None or not self.config.hub_token.configured:
            # BinderHub has no per-launch delete; its idle culler ends the server.
            return False
        hub = str(self.config.hub_api_url).rstrip("/")
        url = URL(f"{hub}/users/{quote(launched.user, safe='')}/server", encoded=True)
        headers = {"Authorization": f"token {self.config.hub_token.read('JupyterHub API')}"}
        try:
            async with self._http().delete(url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.request_timeout)) as resp:
                done = resp.status in (202, 204, 404)  # 404: the server or user is already gone
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("stopping %s through the hub API failed: %s", launched.user, exc)
            return False
        if done:
            self._launched.pop(launch_id, None)
        else:
            log.warning("hub API answered HTTP %s when stopping %s", resp.status, launched.user)
        return done

    # -- health, capacity, versions --------------------------------------------------

    async def _get_json(self, path: str) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
        async with self._http().get(f"{self._base}/{path}", timeout=timeout, headers={"Accept": "application/json"}) as resp:
            return resp.status, json_or_none(await resp.text())

    async def _read_health(self) -> BinderHubHealth:
        now = self.context.clock.now()
        if self._health is not None and now - self._health[0] < self.config.health_cache_seconds:
            return self._health[1]
        try:
            status, body = await self._get_json("health")
            health = parse_health(status, body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            why = f"did not answer within {self.config.request_timeout:g} s" if isinstance(exc, asyncio.TimeoutError) \
                else f"is unreachable ({describe_failure(exc)})"
            check = HealthCheck(service="BinderHub", ok=False, detail={"error": f"BinderHub at {self._base} {why}"})
            health = BinderHubHealth(ok=False, checks=[check], pod_quota=None)
        self._health = (now, health)
        return health

    async def health(self) -> list[HealthCheck]:
        health = await self._read_health()
        if health.ok and not self._versions:
            await self._fetch_versions()
        return health.checks

    async def capacity(self) -> Capacity:
        health = await self._read_health()
        if not health.ok:
            return Capacity(total=0, used=0)
        from_quota = quota_capacity(health.pod_quota) if health.pod_quota else None
        if from_quota is not None:
            return from_quota
        cutoff = self.context.clock.now() - self.config.server_lifetime
        for launch_id in [i for i, s in self._launched.items() if s.started < cutoff]:
            del self._launched[launch_id]
        return Capacity(total=self.config.max_servers, used=len(self._launched), building=self._in_flight)

    async def _fetch_versions(self) -> None:
        try:
            status, body = await self._get_json("versions")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.info("BinderHub /versions unavailable: %s", exc.__class__.__name__)
            return
        if status == 200:
            self._versions = versions_of(body)

    def versions(self) -> dict[str, str]:
        return dict(self._versions)

    async def _discover_providers(self) -> None:
        """The providers BinderHub's ``/_config`` lists (its repo_providers), when it answers one."""
        try:
            status, body = await self._get_json("_config")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.info("BinderHub /_config unavailable (%s); advertising every provider", exc.__class__.__name__)
            return
        served = tuple(p for p in PROVIDERS if isinstance(body, dict) and p in body)
        if status == 200 and served:
            self.providers = served  # type: ignore[misc]
            log.info("BinderHub serves providers %s", ", ".join(served))

    def browser_launch_url(self) -> str | None:
        """BinderHub's own URL, for a broker in redirect mode; not when BinderHub needs an API token."""
        return None if self.config.api_token.configured else self._base


def _http_failure(response: aiohttp.ClientResponse) -> LaunchEvent | None:
    """A ``failed`` event for an answer that is not an event stream, else None."""
    if response.status == 429:
        retry = response.headers.get("Retry-After") or response.headers.get("x-ratelimit-reset")
        hint = f" (retry after {retry})" if retry else ""
        return failed(f"BinderHub is rate limiting launches{hint}", Failure.CAPACITY)
    if response.status == 503:
        return failed("BinderHub is unavailable (HTTP 503)", Failure.UNAVAILABLE)
    if response.status != 200:
        return failed(f"BinderHub answered HTTP {response.status}", Failure.UPSTREAM)
    if response.content_type != "text/event-stream":
        return failed(f"BinderHub answered {response.content_type or 'no content type'}, not an event stream", Failure.UPSTREAM)
    return None

