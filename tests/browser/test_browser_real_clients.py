"""The clients people really use, against a demo federation, in relay and redirect modes.

``@jupyterhub/binderhub-client`` under Node, and ``thebe-core`` in Debian's Chromium from a page
on a second loopback origin (``http://localhost:<port>``, the broker being on 127.0.0.1), both as
published on npm (pinned versions, installed by the test into ``tests/.npm/``). No request is
intercepted: CORS, the 307 in redirect mode, the ticketed agent stream, the kernel's websocket are
what a browser really does. Each launch must reach ``ready``, start a kernel, and print 42.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import aiohttp
import pytest

from fedbroker.demo.run import DemoFederation
from federation_fixture import repo_named

CLIENTS = {"@jupyterhub/binderhub-client": "0.5.0", "thebe-core": "0.5.0"}
HERE = Path(__file__).parent / "clients"
NPM_DIR = Path(__file__).resolve().parents[1] / ".npm" / ("clients-" + "-".join(v for v in CLIENTS.values()))


@pytest.fixture(scope="session")
def npm_clients(require_component: Callable[[bool, str], None]) -> Path:
    """The pinned npm packages, installed once per version set under tests/.npm/."""
    marker = NPM_DIR / "installed.json"
    if marker.exists() and json.loads(marker.read_text()) == CLIENTS:
        return NPM_DIR / "node_modules"
    require_component(shutil.which("node") is not None and shutil.which("npm") is not None,
                      "node and npm are needed for the real Binder clients (apt-get install nodejs npm)")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(NPM_DIR),
         *[f"{name}@{version}" for name, version in CLIENTS.items()]],
        capture_output=True, text=True, timeout=600,
    )
    require_component(result.returncode == 0, f"npm install of {CLIENTS} failed: {result.stderr[-800:]}")
    marker.write_text(json.dumps(CLIENTS))
    return NPM_DIR / "node_modules"


@pytest.fixture(scope="module")
def brokers(federation: DemoFederation) -> dict[str, str]:
    """The demo's broker (relay mode) and a second broker on the same registry in redirect mode."""
    return {"relay": federation.broker_url, "redirect": federation.serve_extra_broker("--mode", "redirect")}


def _server_dirs(fed: DemoFederation) -> dict[str, set[str]]:
    """Each member's launch ids with a server directory (the local backend's ``servers/<launch id>``)."""
    return {m: {p.name for p in (fed.directory / "members" / m).glob("**/local/servers/*")} for m in fed.members}


@pytest.fixture(scope="module", autouse=True)
def leave_the_members_as_found(federation: DemoFederation) -> Iterator[None]:
    """Stop every server this module's launches started, as the broker would (a signed DELETE), so
    the browser tests after it find the members' slots free."""
    from fedproto.clock import SystemClock
    from fedproto.keys import KeyRing
    from fedproto.tokens import sign_request

    before = _server_dirs(federation)
    yield
    key = KeyRing.load(federation.broker_config.parent / "keys").signing_key
    for member_id, launch_ids in _server_dirs(federation).items():
        for launch_id in sorted(launch_ids - before[member_id]):
            path = f"/api/v1/launches/{launch_id}"
            token = sign_request(key, issuer="demo", audience=member_id, method="DELETE", path_qs=path, body=b"",
                                 clock=SystemClock())
            request = urllib.request.Request(federation.members[member_id].agent_url + path, method="DELETE",
                                             headers={"Authorization": f"Bearer {token}"})
            with contextlib.suppress(urllib.error.HTTPError):  # 404: already stopped (the abandoned launch)
                urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture(scope="module")
def page_origin(npm_clients: Path) -> Iterator[str]:
    """A static site on a second loopback origin: the thebe page and thebe-core's files."""
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"fed-thebe-page-{uuid.uuid4().hex[:8]}"
    shutil.copytree(npm_clients / "thebe-core" / "dist" / "lib", root / "thebe")
    for name in ("thebe.html", "page.js"):
        shutil.copy(HERE / name, root / name)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def _run(coro: Any) -> Any:
    """``asyncio.run`` on a thread of its own: Playwright's sync API keeps an event loop on this one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


async def _run_code(url: str, token: str, code: str) -> str:
    """Start a kernel on a launched server, run ``code`` over the kernel's websocket, return its stdout."""
    auth = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=auth) as http_session:
        async with http_session.post(f"{url}api/kernels", json={"name": "python3"}) as resp:
            assert resp.status == 201, await resp.text()
            kernel = await resp.json()
        msg_id = uuid.uuid4().hex
        request = {"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t", "session": uuid.uuid4().hex,
                              "version": "5.3", "date": ""}, "parent_header": {}, "metadata": {}, "channel": "shell",
                   "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}}
        out = ""
        ws_url = f"{url.replace('http', 'ws', 1)}api/kernels/{kernel['id']}/channels"
        async with http_session.ws_connect(ws_url) as ws:
            await ws.send_json(request)
            async with asyncio.timeout(60):
                async for message in ws:
                    msg = json.loads(message.data)
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    if msg["msg_type"] == "stream":
                        out += msg["content"]["text"]
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        break
        await http_session.delete(f"{url}api/kernels/{kernel['id']}")
        return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["relay", "redirect"])
def test_binderhub_client_under_node_launches_and_the_kernel_prints_42(
    npm_clients: Path, brokers: dict[str, str], federation: DemoFederation, mode: str
) -> None:
    repo = repo_named(federation, "hello")
    # An ES module resolves its imports from where it lives: run it beside the installed packages.
    script = shutil.copy(HERE / "binderhub_client_launch.mjs", npm_clients.parent / "binderhub_client_launch.mjs")
    result = subprocess.run(["node", str(script), brokers[mode], f"git/{repo.spec()}"],
                            capture_output=True, text=True, timeout=180)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events and events[-1]["phase"] == "ready", (result.stdout[-2000:], result.stderr[-2000:])
    ready = events[-1]
    member = federation.members[ready["member"]]
    if mode == "redirect":  # the browser went to the member's agent with a ticket, not through the broker
        assert ready["binder_launch_host"].rstrip("/") == federation.broker_url
    assert ready["url"].startswith("http://127.0.0.1:") and member is not None
    assert _run(_run_code(ready["url"], ready["token"], "print(6*7)")).strip() == "42"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["relay", "redirect"])
def test_thebe_on_another_origin_launches_and_prints_42(
    chromium: Any, page_origin: str, brokers: dict[str, str], federation: DemoFederation, mode: str
) -> None:
    repo = repo_named(federation, "hello")
    context = chromium.new_context()
    page = context.new_page()
    failures: list[str] = []
    page.on("console", lambda msg: failures.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(f"{page_origin}/thebe.html?binder={quote(brokers[mode], safe='')}&repo={quote(repo.url, safe='')}")
        page.wait_for_function("window.THEBE_RESULT || window.THEBE_ERROR", timeout=180_000)
        error = page.evaluate("window.THEBE_ERROR || null")
        assert error is None, (error, failures[-10:], page.inner_text("#status")[-2000:])
        assert page.inner_text("#output").strip() == "42"
    finally:
        context.close()


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def _abandon(broker: str, repo_spec: str) -> str:
    """Start a launch through the broker and leave as soon as it is under way; the member that had it."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{broker}/build/git/{repo_spec}", headers={"Accept": "text/event-stream"}) as resp:
            async for line in resp.content:
                if line.startswith(b"data:") and b'"member"' in line:
                    return json.loads(line[5:])["member"]
    raise AssertionError("the launch sent no event")


@pytest.mark.slow
def test_an_abandoned_launch_is_stopped_at_the_member_within_seconds(brokers: dict[str, str], federation: DemoFederation) -> None:
    """A real agent and jupyter-server: the broker cancels the launch the client left, the member stops it."""
    import time

    def counts(agent: str) -> tuple[float, float]:
        metrics = urllib.request.urlopen(f"{agent}/metrics", timeout=5).read().decode()
        busy = _metric(metrics, "fedmember_servers_running ") + _metric(metrics, "fedmember_servers_building ")
        return _metric(metrics, 'fedmember_launches_total{outcome="cancelled"}'), busy

    before = {m: counts(a.agent_url) for m, a in federation.members.items()}
    member_id = _run(_abandon(brokers["relay"], repo_named(federation, "tables").spec()))
    agent = federation.members[member_id].agent_url
    deadline = time.monotonic() + 15
    while True:
        cancelled, busy = counts(agent)
        if cancelled > before[member_id][0] and busy <= before[member_id][1]:
            break  # cancelled at the member, and nothing of it left running or building
        assert time.monotonic() < deadline, (before[member_id], cancelled, busy)
        time.sleep(0.3)
