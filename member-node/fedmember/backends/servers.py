"""Running jupyter-server processes: start, wait until ready, ask their activity, stop, cull.

Each server runs from an environment's interpreter on a free port of the
loopback interface with a random token (passed in the environment, never on
the command line where ``ps`` would show it), with its Jupyter config and
runtime directories inside its own work directory so a site's ``~/.jupyter``
cannot change it. Its output goes to ``server.log`` in that directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Sequence

import aiohttp

from fedproto.clock import Clock

from . import procs
from .sandbox import Jail, Mount, Sandbox

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2
TEMPLATES_IN_SANDBOX = "/opt/fedmember/templates"
# The agent's variables that a server may see: locale and proxies. Nothing else (tokens, config paths).
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# A link's urlpath that names no page here (an RStudio or Voila path, a typo) lands on this.
NOT_FOUND_PAGE = """{% extends "error.html" %}
{% block error_detail %}
<p>There is no page at this address on this notebook server.</p>
<p>It serves JupyterLab at <a href="{{base_url}}lab">{{base_url}}lab</a> and the classic
notebook's file list at <a href="{{base_url}}tree">{{base_url}}tree</a>. If a Binder link brought
you here, its <code>urlpath</code> names something this server does not have (only <code>lab/...</code>,
<code>tree/...</code>, <code>notebooks/...</code> and <code>edit/...</code> work); try the links above.</p>
{% endblock %}
"""
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?$")


class ServerError(Exception):
    """A server that did not start; the message is safe to show users."""


@dataclass
class LocalServer:
    """One running jupyter-server."""

    launch_id: str
    proc: asyncio.subprocess.Process
    port: int
    token: str
    workdir: Path
    env_id: str
    url: str
    started_at: float
    base_url: str = "/"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def origin_args(origins: Sequence[str]) -> list[str]:
    """jupyter-server's CORS settings for the allowed browser origins (malformed ones are dropped)."""
    if "*" in origins:
        return ["--ServerApp.allow_origin=*"]
    valid = sorted({o.rstrip("/") for o in origins if _ORIGIN.match(o.rstrip("/"))})
    if not valid:
        return []
    pattern = "^(" + "|".join(re.escape(o) for o in valid) + ")$"
    return [f"--ServerApp.allow_origin_pat={pattern}", "--ServerApp.allow_credentials=False"]


def server_argv(
    python: Path | str,
    *,
    ip: str,
    port: int,
    root_dir: str,
    origins: Sequence[str],
    templates: str = "",
    allow_root: bool = False,
    base_url: str = "/",
) -> list[str]:
    """The one jupyter-server command line every local launch uses (add server options here)."""
    argv = [
        # -P: the checkout (the working directory) is not on sys.path, so a repository's own
        # jupyter_server/ package cannot replace the server.
        str(python), "-P", "-m", "jupyter_server", "--ServerApp.open_browser=False", "--ServerApp.default_url=/lab",
        f"--ServerApp.ip={ip}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}", *origin_args(origins),
        # jupyter-lsp would look for language servers at every start (it runs npm): none are here.
        "--LanguageServerManager.autodetect=False",
    ]  # fmt: skip
    if base_url != "/":
        # Fronted by the agent (serverproxy): requests arrive with the browser's Host (the agent's
        # public name), which a loopback-only server would otherwise refuse.
        argv += [f"--ServerApp.base_url={base_url}", "--ServerApp.allow_remote_access=True"]
    if templates:
        argv.append(f"--ServerApp.extra_template_paths={templates}")
    if allow_root:
        argv.append("--allow-root")
    return argv


def server_env(python: Path, token: str, *, home: str, private: Path | None) -> dict[str, str]:
    """The server's whole environment: nothing of the agent's (its variables may hold secrets).

    JupyterLab and the classic notebook UI are installed beside the agent, not in
    each launch's environment, so the agent's ``etc/jupyter`` (which enables their
    server extensions) and ``share/jupyter`` (their assets) are named here.
    ``private`` holds Jupyter's own config and runtime files: the sandbox's private
    ``/tmp`` when None, else a directory of the launch's (no sandbox).
    """
    agent = Path(sys.prefix)
    own = Path(private) if private is not None else Path("/tmp")
    env = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
    env.update(
        PATH=f"{python.parent}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        HOME=home,
        USER="jovyan",  # the sandbox's uid has no passwd entry; getpass and shells read these
        LOGNAME="jovyan",
        SHELL="/bin/bash",
        LANG=env.get("LANG", "C.UTF-8"),
        JUPYTER_TOKEN=token,
        JUPYTER_CONFIG_DIR=str(own / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(own / "jupyter-runtime"),
        JUPYTER_DATA_DIR=str(own / "jupyter-data"),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_CONFIG_PATH=str(agent / "etc" / "jupyter"),
        JUPYTER_PATH=str(agent / "share" / "jupyter"),
        JUPYTERLAB_DIR=str(agent / "share" / "jupyter" / "lab"),
        VIRTUAL_ENV=str(python.parent.parent),
    )
    return env


def _write_templates(workdir: Path) -> Path:
    templates = workdir / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "404.html").write_text(NOT_FOUND_PAGE)
    return templates


class ServerPool:
    """The servers of one local backend, by launch id."""

    def __init__(
        self,
        *,
        bind_host: str,
        server_host: str,
        start_timeout: float,
        stop_grace: float,
        clock: Clock,
        sandbox: Sandbox,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.bind_host = bind_host
        self.wrapper = list(wrapper)
        self.server_host = server_host
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.clock = clock
        self.sandbox = sandbox
        self.servers: dict[str, LocalServer] = {}
        self._session: aiohttp.ClientSession | None = None
        # Set by close(): the agent is stopping. A launch still preparing then must not start a
        # server after stop_all() ran: nobody would stop it, and the sandbox's parent-death signal
        # only covers an agent that outlives the sandbox's first milliseconds.
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def close(self) -> None:
        self._closed = True
        await self.stop_all()
        if self._session is not None:
            await self._session.close()

    async def start(
        self, launch_id: str, *, python: Path, jail: Jail, workdir: Path, env_id: str, origins: Sequence[str],
        base_url: str = "/",
    ) -> LocalServer:
        """Start a server in ``jail`` and wait until ``/api/status`` answers with its token."""
        if self._closed:
            raise ServerError("the member is shutting down")
        token = secrets.token_urlsafe(24)
        port = free_port(self.bind_host)
        templates = _write_templates(workdir)
        jail = replace(jail, mounts=(*jail.mounts, Mount(templates, TEMPLATES_IN_SANDBOX)))
        confined = self.sandbox.confined
        argv = server_argv(
            python, ip=self.bind_host, port=port, root_dir=self.sandbox.home(jail), origins=origins,
            templates=TEMPLATES_IN_SANDBOX if confined else str(templates), allow_root=not confined, base_url=base_url,
        )  # fmt: skip
        env = server_env(python, token, home=self.sandbox.home(jail), private=None if confined else workdir)
        with open(workdir / "server.log", "ab") as logfile:
            # The operator's wrapper (nice, prlimit, a launcher script) runs outside the sandbox, on
            # host paths, and must exec the rest: the sandbox and the server inside it.
            command = [*self.wrapper, *self.sandbox.wrap(argv, jail)]
            proc = await procs.spawn(command, cwd=jail.home, env=env, output=logfile.fileno())
        server = LocalServer(
            launch_id, proc, port, token, workdir, env_id, f"http://{self.server_host}:{port}{base_url}", self.clock.now(),
            base_url,
        )
        self.servers[launch_id] = server
        try:
            if self._closed:  # closed while the process was being spawned
                raise ServerError("the member is shutting down")
            await self.wait_ready(server)
        except BaseException:
            await self.stop(launch_id)
            raise
        return server

    async def wait_ready(self, server: LocalServer) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while loop.time() < deadline:
            if server.proc.returncode is not None:
                raise ServerError(f"jupyter-server exited with status {server.proc.returncode}: {self._log_tail(server)}")
            if await self.status(server) is not None:
                return
            await asyncio.sleep(POLL_INTERVAL)
        raise ServerError(f"jupyter-server did not answer within {self.start_timeout:g} s")

    @staticmethod
    def _log_tail(server: LocalServer) -> str:
        try:
            lines = (server.workdir / "server.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    async def status(self, server: LocalServer) -> dict[str, object] | None:
        """The server's ``/api/status`` (asked with its token), or None when it does not answer."""
        url = f"http://{self.bind_host}:{server.port}{server.base_url}api/status"
        try:
            async with self._http().get(url, headers={"Authorization": f"token {server.token}"}) as resp:
                if resp.status != 200:
                    return None
                body = await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    async def idle_seconds(self, server: LocalServer) -> float | None:
        status = await self.status(server)
        raw = status.get("last_activity") if status else None
        if not isinstance(raw, str):
            return None
        try:
            last = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            return None
        return self.clock.now() - last

    async def stop(self, launch_id: str) -> bool:
        """Stop the server and remove its work directory; False when unknown."""
        server = self.servers.get(launch_id)
        if server is None:
            return False
        try:
            await procs.terminate(server.proc, self.stop_grace)
        finally:
            # Forget it only once it is gone, so a cancelled stop is retried by stop_all().
            if server.proc.returncode is not None and self.servers.get(launch_id) is server:
                del self.servers[launch_id]
                shutil.rmtree(server.workdir, ignore_errors=True)
        return True

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(launch_id) for launch_id in list(self.servers)))

    async def cull(self, idle_limit: float) -> list[str]:
        """Stop servers that exited or were idle longer than ``idle_limit``; return their ids."""
        culled = []
        for launch_id, server in list(self.servers.items()):
            if server.proc.returncode is None:
                idle = await self.idle_seconds(server)
                if idle is None or idle <= idle_limit:
                    continue
                log.info("culling server %s, idle for %.0f s", launch_id, idle)
            else:
                log.info("server %s exited with status %s", launch_id, server.proc.returncode)
            if await self.stop(launch_id):
                culled.append(launch_id)
        return culled
