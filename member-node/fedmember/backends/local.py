"""The ``local`` backend: clone, build a virtualenv, run a real jupyter-server on this machine.

For demos, tests and small single-machine sites. Repositories are hostile:
their pip builds and servers run in a bubblewrap sandbox as a per-launch
unprivileged user (see :mod:`.sandbox` for what it holds and what it does
not), once the checkout has passed :mod:`.repocheck` (no symlinks leaving it,
no pip options in ``requirements.txt``). State lives under
``<state_dir>/local``: ``envs/`` (cached environments and the index of repos built) and ``servers/<launch_id>/`` (a launch's checkout, Jupyter
config and log; removed when its server stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import AsyncIterator, Literal

from pydantic import Field

from fedproto.failures import Failure
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec, git_spec
from fedproto.urlpolicy import AddressPolicy
from fedproto.status import Capacity, HealthCheck

from .base import Backend, BackendConfig, BackendContext, failed
from .datamount import mount_datasets
from .gitfetch import FetchError, GitFetcher
from .repocheck import RepoRefused, check_requirements, check_symlinks
from .sandbox import HOME, Isolation, Jail, Limits, Mount, Sandbox, SandboxError
from .servers import ServerError, ServerPool
from .venvbuild import BuildError, EnvBuilder

log = logging.getLogger(__name__)


class LocalConfig(BackendConfig):
    """Settings of the ``local`` backend (``[backend]`` with ``kind = "local"``)."""

    kind: Literal["local"] = "local"
    capacity: int = Field(default=4, ge=0, description="Servers that may run (or be built) at once; beyond it, 429.")
    cull_idle_seconds: float = Field(default=3600.0, ge=0, description="Stop servers idle this long (0: never).")
    cull_interval_seconds: float = Field(default=60.0, gt=0, description="How often to look for idle servers.")
    server_host: str = Field(default="127.0.0.1", description="Host name put in server URLs given to browsers.")
    bind_host: str = Field(default="127.0.0.1", description="Address jupyter-server listens on.")
    python: str = Field(default="", description="Interpreter that creates environments (default: the agent's).")
    pip_args: list[str] = Field(default_factory=list, description="Extra pip install arguments, e.g. an index URL.")
    clone_timeout: float = Field(default=300.0, gt=0, description="Seconds each git step may take.")
    build_timeout: float = Field(default=900.0, gt=0, description="Seconds pip may take to install requirements.")
    start_timeout: float = Field(default=60.0, gt=0, description="Seconds jupyter-server may take to answer.")
    stop_grace_seconds: float = Field(default=5.0, ge=0, description="Seconds between SIGTERM and SIGKILL.")
    isolation: Isolation = Field(
        default="bubblewrap",
        description='How repository code runs: "bubblewrap" (a sandbox per launch; needs the bwrap command) or '
        '"none" (as the agent, unconfined, datasets writable unless mounted read-only: trusted repositories only).',
    )
    sandbox_uid_base: int = Field(
        default=61000, ge=1000, le=2**31 - 1 - 100_000,
        description="When the agent runs as root, launch n runs as uid sandbox_uid_base + n (one uid per running launch).",
    )  # fmt: skip
    memory_limit_bytes: int = Field(
        default=4 * 1024**3, ge=0, description="Address space each sandboxed process may use (0: unlimited)."
    )
    process_limit: int = Field(
        default=256, ge=0, description="Processes each launch's uid may run at once (0: unlimited)."
    )
    front_servers: bool | None = Field(
        default=None,
        description="Serve each server through the agent's own origin at /servers/<launch_id>/ (the agent "
        "reverse-proxies it; ready URLs use public_url) instead of http://server_host:<port>/. "
        "Default (null): on when public_url is https, where browsers cannot be sent to plain-http ports.",
    )
    server_wrapper: list[str] = Field(
        default_factory=list,
        description="A command put before each server's command line, which it must exec (e.g. "
        '["nice", "-n", "10"], ["prlimit", "--as=8000000000"], or a site\'s launcher script).',
    )


@dataclass
class _Prepared:
    """What preparing a launch produced: the checkout and its environment."""

    spec: RepoSpec
    workdir: Path
    uid: int | None = None
    commit: str = ""
    env_id: str = ""


def _persistent_request(spec: RepoSpec, commit: str) -> str:
    if spec.provider == "gh":
        return f"v2/gh/{spec.repo}/{commit}"
    return f"v2/git/{git_spec(spec.repo_url, commit)}"


class LocalBackend(Backend):
    """Runs each launch as a jupyter-server process in a cached virtualenv."""

    kind = "local"
    providers = ("git", "gh")
    Config = LocalConfig
    config: LocalConfig

    def __init__(self, config: BackendConfig, context: BackendContext) -> None:
        super().__init__(config, context)
        cfg = self.config
        self.root = context.state_dir / "local"
        self.fetcher = GitFetcher(timeout=cfg.clone_timeout, allow_file=context.dev, ca_bundle=context.ca_bundle,
                                  destinations=AddressPolicy.of(dev=context.dev, allow=context.fetch_allow))
        self.sandbox = Sandbox(
            isolation=cfg.isolation,
            uid_base=cfg.sandbox_uid_base,
            limits=Limits(memory_bytes=cfg.memory_limit_bytes, processes=cfg.process_limit),
            pythons=[cfg.python] if cfg.python else [],
        )
        self.envs = EnvBuilder(
            self.root / "envs", python=cfg.python, pip_args=cfg.pip_args, timeout=cfg.build_timeout, sandbox=self.sandbox
        )
        self.pool = ServerPool(
            bind_host=cfg.bind_host,
            server_host=cfg.server_host,
            start_timeout=cfg.start_timeout,
            stop_grace=cfg.stop_grace_seconds,
            clock=context.clock,
            sandbox=self.sandbox,
            wrapper=cfg.server_wrapper,
        )
        front = cfg.front_servers
        self.fronted = context.public_url.startswith("https://") if front is None else front
        self._slots: dict[str, int] = {}  # launch id -> slot (its sandbox uid is uid_base + slot)
        self._pending: dict[str, Path] = {}  # launch id -> work dir, while preparing
        self._culler: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        (self.root / "servers").mkdir(parents=True, exist_ok=True)
        await self.sandbox.check(self.root)
        if self.config.cull_idle_seconds > 0:
            self._culler = asyncio.create_task(self._cull_loop(), name="local-culler")

    async def stop(self) -> None:
        if self._culler is not None:
            self._culler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._culler
        await self.pool.close()
        for workdir in self._pending.values():
            shutil.rmtree(workdir, ignore_errors=True)

    async def _cull_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.cull_interval_seconds)
            try:
                await self.cull_once()
            except Exception:  # noqa: BLE001 - one bad round must not end culling
                log.exception("culling idle servers failed")

    async def cull_once(self) -> list[str]:
        """Stop servers idle longer than ``cull_idle_seconds`` (and ones that exited)."""
        return await self.pool.cull(self.config.cull_idle_seconds)

    # -- launching -----------------------------------------------------------
    def _refusal(self, request: LaunchRequest) -> LaunchEvent | None:
        """The ``failed`` event that refuses the launch before any work, or None."""
        if request.launch_id in self._pending or request.launch_id in self.pool.servers:
            return failed(f"launch {request.launch_id} already exists", Failure.CONFLICT)
        if len(self.pool.servers) + len(self._building()) >= self.config.capacity:
            return failed(f"This member is full ({self.config.capacity} servers); try again later.", Failure.CAPACITY)
        return None

    async def _prepare(self, prep: _Prepared) -> AsyncIterator[LaunchEvent]:
        """Fetch and build, yielding progress; sets ``prep.commit`` and ``prep.env_id``."""
        spec = prep.spec
        yield LaunchEvent(phase="fetching", message=f"Fetching {spec.repo_url} at {spec.ref}...\n")
        checkout = await self.fetcher.fetch(spec, prep.workdir / "repo")
        prep.commit = checkout.commit
        yield LaunchEvent(phase="fetching", message=f"Checked out {checkout.commit}\n")
        check_symlinks(checkout.path)
        check_requirements(checkout.path / "requirements.txt")
        prep.env_id = self.envs.env_id(checkout.path)
        if self.envs.is_built(prep.env_id):
            yield LaunchEvent(phase="building", message=f"Using cached environment {prep.env_id}\n")
        else:
            async for line in self.envs.build(prep.env_id, checkout.path, prep.uid):
                yield LaunchEvent(phase="building", message=line + "\n")
        self.envs.record(spec.key, prep.env_id)
        yield LaunchEvent(phase="built", message="Built image, launching...\n", imageName=prep.env_id)

    async def _steps(self, request: LaunchRequest, spec: RepoSpec, *, launch: bool) -> AsyncIterator[LaunchEvent]:
        prep = _Prepared(spec, self.root / "servers" / request.launch_id, uid=self._uid(request.launch_id))
        shutil.rmtree(prep.workdir, ignore_errors=True)  # left over by a crashed agent
        prep.workdir.mkdir(parents=True)
        async for event in self._prepare(prep):
            yield event
        if not launch:
            return
        repo = prep.workdir / "repo"
        messages, placed = mount_datasets(request, self.context.datasets, repo, bind=self.sandbox.confined)
        for message in messages:
            yield LaunchEvent(phase="launching", message=message + "\n")
        yield LaunchEvent(phase="launching", message="Launching server...\n")
        self.sandbox.hand_over(repo, prep.uid)
        env_dir = self.envs.path(prep.env_id)
        data = tuple(Mount(p.source, f"{HOME}/{p.relative}") for p in placed)
        jail = Jail(home=repo, mounts=(Mount(env_dir, str(env_dir)), *data), uid=prep.uid)
        server = await self.pool.start(
            request.launch_id,
            python=self.envs.python_of(prep.env_id),
            jail=jail,
            workdir=prep.workdir,
            env_id=prep.env_id,
            origins=[*self.context.cors_allow_origins, *([request.origin] if request.origin else [])],
            base_url=f"/servers/{request.launch_id}/" if self.fronted else "/",
        )
        # Fronted: browsers reach it on the agent's own origin, through serverproxy.
        url = self.context.public_url.rstrip("/") + server.base_url if self.fronted else server.url
        yield self._ready(request, prep, url, server.token)

    def _ready(self, request: LaunchRequest, prep: _Prepared, url: str, token: str) -> LaunchEvent:
        spec = prep.spec
        public = self.context.public_url
        return LaunchEvent(
            phase="ready",
            message=f"server running at {url}\n",
            url=url,
            token=token,
            image=prep.env_id,
            repo_url=spec.repo_url,
            binder_ref_url=f"{spec.repo_url}/tree/{prep.commit}" if spec.provider == "gh" else spec.repo_url,
            binder_launch_host=(public.rstrip("/") + "/") if public else None,
            binder_request=spec.binder_request,
            binder_persistent_request=_persistent_request(spec, prep.commit),
            binder_client_ip=request.client_ip,
        )

    async def _run(self, request: LaunchRequest, repo: RepoSpec, *, launch: bool) -> AsyncIterator[LaunchEvent]:
        refusal = self._refusal(request)
        if refusal is not None:
            yield refusal
            return
        self._pending[request.launch_id] = self.root / "servers" / request.launch_id
        try:
            async for event in self._steps(request, repo, launch=launch):
                yield event
        except FetchError as exc:
            yield failed(str(exc), exc.status_code)
        except BuildError as exc:
            # The repository's own fault: final, as a BinderHub member's build failure is.
            tail = "".join(f"  {line}\n" for line in exc.tail[-5:])
            yield failed(f"Building the environment failed: {exc}\n{tail}", Failure.UNBUILDABLE)
        except RepoRefused as exc:
            yield failed(str(exc), Failure.UNBUILDABLE)
        except (ServerError, SandboxError) as exc:
            yield failed(str(exc), Failure.ERROR)
        finally:
            workdir = self._pending.pop(request.launch_id, None)
            if workdir is not None and request.launch_id not in self.pool.servers:
                shutil.rmtree(workdir, ignore_errors=True)
                self._slots.pop(request.launch_id, None)

    def _uid(self, launch_id: str) -> int | None:
        """The launch's sandbox uid: the lowest slot no other pending or running launch holds."""
        live = set(self._pending) | set(self.pool.servers)
        for stale in [k for k in self._slots if k not in live and k != launch_id]:
            del self._slots[stale]
        taken = set(self._slots.values())
        slot = self._slots.setdefault(launch_id, next(n for n in range(len(taken) + 1) if n not in taken))
        return self.sandbox.uid_for(slot)

    async def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        async for event in self._run(request, repo, launch=True):
            yield event

    async def build(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        async for event in self._run(request, repo, launch=False):
            yield event

    async def stop_server(self, launch_id: str) -> bool:
        stopped = await self.pool.stop(launch_id)
        workdir = self._pending.get(launch_id)
        if workdir is not None:
            # Still preparing: the launch's own cleanup removes the rest when it ends.
            shutil.rmtree(workdir, ignore_errors=True)
            return True
        return stopped

    def server_address(self, launch_id: str) -> tuple[str, int] | None:
        server = self.pool.servers.get(launch_id)
        if not self.fronted or server is None or server.proc.returncode is not None:
            return None
        return self.pool.bind_host, server.port

    # -- reporting -------------------------------------------------------------
    async def health(self) -> list[HealthCheck]:
        git_ok = shutil.which(self.fetcher.git) is not None
        try:
            usage = shutil.disk_usage(self.root if self.root.exists() else self.context.state_dir.parent)
            disk = {"free_bytes": usage.free}
            disk_ok = usage.free > 100 * 1024 * 1024
        except OSError as exc:
            disk, disk_ok = {"error": exc.strerror or "unavailable"}, False
        capacity = await self.capacity()
        return [
            HealthCheck(service="git", ok=git_ok),
            HealthCheck(service="Environment storage", ok=disk_ok, detail=disk),
            HealthCheck(service="Local servers", ok=True, detail=capacity.model_dump()),
        ]

    def _building(self) -> set[str]:
        # A launch starting its server is in both maps until its stream ends: count it once, as used.
        return set(self._pending) - set(self.pool.servers)

    async def capacity(self) -> Capacity:
        return Capacity(total=self.config.capacity, used=len(self.pool.servers), building=len(self._building()))

    async def images(self) -> list[str]:
        return self.envs.built_repos()

    def versions(self) -> dict[str, str]:
        versions = {"backend": "local"}
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["jupyter_server"] = metadata.version("jupyter-server")
        return versions
