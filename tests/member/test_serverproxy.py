"""A local member's servers fronted on the agent's own origin (serverproxy): a real agent, a real
sandboxed jupyter-server, a real kernel, everything reached only through ``/servers/<launch_id>/``."""

from __future__ import annotations

import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
from agentkit import Signer, git_spec_of, launch_body, member_config, read_events

from fedbroker.launch.events import ready_url
from fedmember.app import make_app
from fedproto.launch import LaunchEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from tlskit import CA  # noqa: E402  (tests/e2e: the private-CA helper)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def bubblewrap(require_component: Callable[[bool, str], None]) -> None:
    require_component(shutil.which("bwrap") is not None, "bubblewrap is not installed (apt-get install bubblewrap)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _status(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(url + "api/status", headers={"Authorization": f"token {token}"}) as resp:
        await resp.read()  # a half-read TLS reply closes gracefully, and can outlive the test's loop unclosed
        return resp.status


async def _execute(http: aiohttp.ClientSession, url: str, token: str, code: str) -> str:
    """Start a kernel through the proxy, run ``code`` over the proxied channels websocket, return its result."""
    headers = {"Authorization": f"token {token}"}
    async with http.post(url + "api/kernels", headers=headers, json={"name": "python3"}) as resp:
        assert resp.status == 201, await resp.text()
        kernel = (await resp.json())["id"]
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": "u", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
    }  # fmt: skip
    result, seen = "", set()
    channels = url.replace("http", "ws", 1) + f"api/kernels/{kernel}/channels"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(channels, headers={"Authorization": "token wrong-token"})
    assert refused.value.status == 403  # jupyter-server refuses the websocket itself
    async with http.ws_connect(channels, headers=headers) as ws:
        await ws.send_json(request)
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = frame.json()
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "execute_result":
                result = msg["content"]["data"]["text/plain"]
            seen.add(msg["content"].get("execution_state", kind))
            # The shell reply and the iopub result are not ordered against each other; idle comes last on iopub.
            if {"execute_reply", "idle"} <= seen:
                break
    async with http.delete(url + f"api/kernels/{kernel}", headers=headers) as resp:
        assert resp.status == 204
    return result


async def _launch_and_exercise(public: str, signer: Signer, repo: Path, ssl: Any = None) -> dict[str, Any]:
    """Launch through the agent at ``public``, then use the server only through the agent's URL."""
    body = launch_body(git_spec_of(repo), "git", launch_id="launch-front-1")
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=ssl)) as http:
        path = "/api/v1/launches"
        async with http.post(f"{public}{path}", data=body, headers=signer.headers("POST", path, body)) as resp:
            ready = (await read_events(resp))[-1]
        assert ready["phase"] == "ready", ready
        url, token = ready["url"], ready["token"]
        assert url == f"{public}/servers/launch-front-1/"  # the server's own port is not in it
        assert await _status(http, url, token) == 200
        assert await _status(http, url, "wrong-token") == 403  # jupyter-server's own check, through the proxy
        async with http.get(url + "lab", headers={"Authorization": f"token {token}"}) as resp:
            assert resp.status == 200 and "JupyterLab" in await resp.text()
        assert await _execute(http, url, token, "6*7") == "42"
        # No open proxy: a prefix that names no live launch of this agent is 404, whatever the Host says.
        async with http.get(f"{public}/servers/launch-unknown/api/status", headers={"Host": "127.0.0.1:1"}) as resp:
            await resp.read()
            assert resp.status == 404
        stop = "/api/v1/launches/launch-front-1"
        async with http.delete(f"{public}{stop}", headers=signer.headers("DELETE", stop)) as resp:
            assert resp.status == 204
        async with http.get(url + "api/status", headers={"Authorization": f"token {token}"}) as resp:
            await resp.read()
            assert resp.status == 404  # the stopped launch's route is gone
    return ready


async def test_a_local_launch_is_served_only_through_the_agents_origin(
    aiohttp_server: Any, tmp_path: Path, make_repo: Callable[..., Path], broker_ring: Any, signer: Signer
) -> None:
    port = _free_port()
    public = f"http://127.0.0.1:{port}"
    backend = {"kind": "local", "pip_args": ["--no-index"], "front_servers": True}
    config = member_config(tmp_path, backend=backend, public_url=public)
    await aiohttp_server(make_app(config, broker_keys=broker_ring.public_set()), port=port)
    await _launch_and_exercise(public, signer, make_repo())


async def test_an_https_agent_fronts_its_servers_by_default_and_the_broker_accepts_the_url(
    aiohttp_server: Any, tmp_path: Path, make_repo: Callable[..., Path], broker_ring: Any, signer: Signer
) -> None:
    ca = CA(tmp_path / "ca", "front-ca")
    cert, key = ca.issue("agent")
    port = _free_port()
    public = f"https://127.0.0.1:{port}"
    backend = {"kind": "local", "pip_args": ["--no-index"]}  # front_servers unset: on, as public_url is https
    config = member_config(tmp_path, backend=backend, public_url=public, tls_cert_file=str(cert), tls_key_file=str(key))
    context = config.server_ssl()
    assert context is not None
    await aiohttp_server(make_app(config, broker_keys=broker_ring.public_set()), port=port, ssl=context)
    ready = await _launch_and_exercise(public, signer, make_repo(), ssl=ca.client_context())
    # The broker's trust rule (https, the member's own host) takes the fronted URL as it is.
    assert ready_url(LaunchEvent.model_validate(ready), public) == ready["url"]
