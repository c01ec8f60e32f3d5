"""Fixtures shared by the binderhub, jupyterhub and kubernetes backend tests (imported by those test modules).

Helpers that need something from outside the venv (configurable-http-proxy from
npm, the recorded BinderHub fixtures in ../shared) skip with a printed reason
locally and fail when ``CI=true``, so CI never passes by skipping them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from contextlib import contextmanager
from typing import Any, AsyncIterator, Iterator

import pytest

from fedproto.clock import FakeClock
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec
from fedmember.backends.base import Backend, BackendContext
from fedmember.launches import LaunchService
from fedmember.metrics import AgentMetrics

from binderhub_replay import BinderHubReplay, load_recordings

REPO_ROOT = Path(__file__).resolve().parents[2]
BINDERHUB_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "binderhub"


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a missing tool must not turn CI green."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    print(f"skipping: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A port nothing listens on right now (bound, read and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def preflight(backend: Backend, request: LaunchRequest) -> RepoSpec | LaunchEvent:
    """What the agent does before a backend sees a launch: the parsed spec, or the ``failed`` refusal."""
    return LaunchService(backend, AgentMetrics(), launch_timeout=60.0, dev=backend.context.dev).preflight(request)


def launch_on(backend: Backend, request: LaunchRequest) -> AsyncIterator[LaunchEvent]:
    """``backend.launch`` as the agent calls it: with the spec parsed once, here."""
    repo = preflight(backend, request)
    assert isinstance(repo, RepoSpec), repo
    return backend.launch(request, repo)


def build_on(backend: Backend, request: LaunchRequest) -> AsyncIterator[LaunchEvent]:
    repo = preflight(backend, request)
    assert isinstance(repo, RepoSpec), repo
    return backend.build(request, repo)


def make_context(tmp_path: Path, **overrides: Any) -> BackendContext:
    values: dict[str, Any] = {"member_id": "test-member", "state_dir": tmp_path, "dev": True, "clock": FakeClock()}
    values.update(overrides)
    return BackendContext(**values)


async def collect(events: AsyncIterator[LaunchEvent]) -> list[LaunchEvent]:
    """Every event of a launch; asserts there is exactly one terminal event and it is last."""
    out = [event async for event in events]
    assert out, "the launch yielded nothing"
    terminal = [e for e in out if e.terminal or e.phase == "built"]
    assert terminal and terminal[-1] is out[-1], [e.phase for e in out]
    return out


@pytest.fixture(scope="session")
def binderhub_recordings() -> dict[str, Any]:
    if not (BINDERHUB_FIXTURES / "README.md").exists():
        unavailable(f"the recorded BinderHub responses are not at {BINDERHUB_FIXTURES}")
    return load_recordings(BINDERHUB_FIXTURES)


@pytest.fixture
async def binderhub_replay(binderhub_recordings: dict[str, Any], aiohttp_server: Any) -> AsyncIterator[tuple[BinderHubReplay, str]]:
    """A replaying BinderHub on 127.0.0.1 and its base URL."""
    replay = BinderHubReplay(binderhub_recordings)
    server = await aiohttp_server(replay.app(), host="127.0.0.1")
    yield replay, str(server.make_url("/")).rstrip("/")


# -- a real JupyterHub ----------------------------------------------------------------

CHP_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "binder-federation-chp"
HUB_SCOPES = ["admin:users", "admin:servers", "list:users", "read:users", "tokens", "access:servers"]
HUB_CONFIG = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.pid_file = "{tmp}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
# JupyterHub 5+: servers refuse ?token= in URLs unless told otherwise; a launch hands the browser
# its server's URL with the token, as BinderHub does (README, "Beside a JupyterHub").
c.Spawner.environment = {{"JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}}
c.JupyterHub.services = [{{"name": "federation", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "federation", "scopes": {scopes!r}, "services": ["federation"]}}]
"""


def configurable_http_proxy() -> str:
    """configurable-http-proxy from PATH, else npm-installed into a cache directory once."""
    import shutil
    import subprocess

    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    cached = CHP_CACHE / "node_modules" / ".bin" / "configurable-http-proxy"
    if not cached.exists():
        if not shutil.which("npm"):
            unavailable("configurable-http-proxy is not on PATH and npm is missing")
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CHP_CACHE), "configurable-http-proxy"],
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0 or not cached.exists():
            unavailable(f"npm could not install configurable-http-proxy: {result.stderr[-500:]}")
    return str(cached)


def _wait_for_hub(url: str, proc: Any, timeout: float, context: Any = None) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterHub exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"JupyterHub did not answer {url} within {timeout} s")


@pytest.fixture(scope="session")
def jupyterhub_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real JupyterHub (+ configurable-http-proxy) on free 127.0.0.1 ports, spawning local jupyter-singleuser processes.

    Yields a dict: ``api_url``, ``public_url``, ``token_file``, ``token``.
    """
    with run_jupyterhub(tmp_path_factory.mktemp("jupyterhub")) as hub:
        yield hub


@contextmanager
def run_jupyterhub(tmp: Path, *, tls: tuple[str, str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Run a JupyterHub in ``tmp``; ``tls`` = (cert, key, CA bundle) makes its proxy (the public URL) https."""
    import secrets
    import shutil
    import ssl
    import subprocess
    import sys

    hub_bin = Path(sys.executable).with_name("jupyterhub")
    singleuser = Path(sys.executable).with_name("jupyterhub-singleuser")
    if not hub_bin.exists() or not singleuser.exists():
        unavailable("jupyterhub is not installed in this environment (pip install jupyterhub)")
    chp = configurable_http_proxy()
    token = secrets.token_hex(24)
    ports = {"proxy_port": free_port(), "hub_port": free_port(), "proxy_api_port": free_port()}
    config = HUB_CONFIG.format(tmp=tmp, chp=chp, singleuser=str(singleuser), token=token, scopes=HUB_SCOPES, **ports)
    if tls is not None:
        config += f"c.JupyterHub.ssl_cert = {tls[0]!r}\nc.JupyterHub.ssl_key = {tls[1]!r}\n"
    (tmp / "jupyterhub_config.py").write_text(config)
    token_file = tmp / "service-token"
    token_file.write_text(token + "\n")
    log = open(tmp / "hub.log", "w")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{Path(chp).parent}:{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(hub_bin), "-f", str(tmp / "jupyterhub_config.py")], cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env)
    public = f"{'https' if tls else 'http'}://127.0.0.1:{ports['proxy_port']}"
    try:
        _wait_for_hub(f"{public}/hub/api/", proc, timeout=60, context=ssl.create_default_context(cafile=tls[2]) if tls else None)
        yield {"api_url": f"http://127.0.0.1:{ports['hub_port']}/hub/api", "public_url": public, "token_file": token_file, "token": token, "log": tmp / "hub.log"}
    finally:
        proc.terminate()  # the hub stops its servers and its proxy on SIGTERM (cleanup_servers defaults to True)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp / "home", ignore_errors=True)
