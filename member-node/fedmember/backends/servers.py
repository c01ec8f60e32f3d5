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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import aiohttp

from fedproto.clock import Clock

from . import procs

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2
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
        wrapper: Sequence[str] = (),
    ) -> None:
        self.bind_host = bind_host
        self.wrapper = list(wrapper)
        self.server_host = server_host
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.clock = clock
        self.servers: dict[str, LocalServer] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def close(self) -> None:
        await self.stop_all()
        if self._session is not None:
            await self._session.close()

    def _env(self, python: Path, workdir: Path, token: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))}
        env.update(
            JUPYTER_TOKEN=token,
            JUPYTER_CONFIG_DIR=str(workdir / "jupyter-config"),
            JUPYTER_RUNTIME_DIR=str(workdir / "jupyter-runtime"),
            JUPYTER_PLATFORM_DIRS="1",
            VIRTUAL_ENV=str(python.parent.parent),
            PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
        )
        return env

    async def start(
        self, launch_id: str, *, python: Path, root_dir: Path, workdir: Path, env_id: str, origins: Sequence[str]
    ) -> LocalServer:
        """Start a server and wait until ``/api/status`` answers with its token."""
        token = secrets.token_urlsafe(24)
        port = free_port(self.bind_host)
        argv = [
            str(python), "-m", "jupyter_server", "--allow-root", "--ServerApp.open_browser=False",
            f"--ServerApp.ip={self.bind_host}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root_dir}", *origin_args(origins),
        ]  # fmt: skip
        argv = [*self.wrapper, *argv]  # e.g. nice, prlimit, or a site's launcher; it must exec the rest
        with open(workdir / "server.log", "ab") as logfile:
            proc = await procs.spawn(argv, cwd=root_dir, env=self._env(python, workdir, token), output=logfile.fileno())
        server = LocalServer(
            launch_id, proc, port, token, workdir, env_id, f"http://{self.server_host}:{port}/", self.clock.now()
        )
        self.servers[launch_id] = server
        try:
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
        url = f"http://{self.bind_host}:{server.port}/api/status"
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
