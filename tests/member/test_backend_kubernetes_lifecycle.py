"""The kubernetes backend's sessions: routed through a real configurable-http-proxy, surviving agent restarts,
orphans adopted or reaped, idle servers culled. The API server is FAKE (tests/member/fake_kubernetes.py);
with ``kubelet="process"`` the notebook servers are real jupyter-server processes on 127.0.0.x."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentkit import MEMBER_ID, Signer, launch_body, member_config, post_launch, read_events
from fedmember.app import make_app
from fedmember.backends.kubernetes_pods import object_name
from fedproto.clock import FakeClock
from fedproto.keys import PublicKeySet
from fedproto.status import verify_status_ad

from backend_fixtures import collect, free_port, launch_on
from kubekit import NS, Kube, Proxy, kube, make_backend, proxy, request, running, seed_pod, settings, start_fake, until, with_proxy  # noqa: F401



async def _get(url: str, token: str | None = None, method: str = "GET", **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, timeout=aiohttp.ClientTimeout(total=10), **kw) as resp:
            body = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.text()
            return resp.status, body


async def _capacity(server: Any, signer: Signer) -> Any:
    """The capacity in the agent's signed status ad, as the broker reads it."""
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/api/v1/status"), headers=signer.headers("GET", "/api/v1/status")) as resp:
            signed = (await resp.json())["signed"]
        async with session.get(server.make_url("/.well-known/jwks.json")) as resp:
            keys = PublicKeySet.from_jwks(await resp.json())
    return verify_status_ad(signed, keys=keys, member_id=MEMBER_ID, clock=FakeClock(time.time())).capacity


async def _launch(server: Any, signer: Signer, launch_id: str = "launch-0001") -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        body = launch_body(launch_id=launch_id)
        resp = await session.post(server.make_url("/api/v1/launches"), data=body, headers=signer.headers("POST", "/api/v1/launches", body))
        return (await read_events(resp))[-1]


@pytest.fixture
async def site(aiohttp_server: Any, tmp_path: Path, proxy: Proxy) -> tuple[Kube, Proxy, Any]:
    """A fake API server running real notebook servers, a real proxy, and the agent's config for both."""
    kube = await start_fake(aiohttp_server, tmp_path, kubelet="process", ready_delay=0)
    backend = settings(kube.kubeconfig, start_timeout=90, server_port=free_port(), **with_proxy(proxy))
    config = member_config(tmp_path, public_url=proxy.public_url, backend=backend)
    return kube, proxy, config


async def test_kubernetes_fake_api_launch_routed_to_its_server(site: Any, aiohttp_server: Any, broker_ring: Any, signer: Signer) -> None:
    """A signed launch ends in ready; the URL, through the proxy, reaches that pod's jupyter-server, which wants its token."""
    kube, proxy, config = site
    server = await aiohttp_server(make_app(config, broker_keys=broker_ring.public_set()))
    ready = await _launch(server, signer)
    name = object_name("launch-0001")
    assert ready["phase"] == "ready", ready
    assert ready["url"] == f"{proxy.public_url}/{name}/"
    status, body = await _get(ready["url"] + "api/status", ready["token"])
    assert status == 200 and "started" in body
    assert (await _get(ready["url"] + "api/status", "wrong-token"))[0] == 403
    pod_ip = kube.fake.objects["pods"][(NS, name)]["status"]["podIP"]
    routes = await proxy.routes()
    assert routes[f"/{name}"]["target"] == f"http://{pod_ip}:{config.backend.server_port}"
    await server.close()


async def test_kubernetes_fake_api_agent_restart_keeps_the_session(site: Any, aiohttp_server: Any, broker_ring: Any, signer: Signer) -> None:
    """An agent restart mid-session: the server keeps running with the user's work, the new agent counts it and can stop it."""
    kube, proxy, config = site
    first = await aiohttp_server(make_app(config, broker_keys=broker_ring.public_set()))
    ready = await _launch(first, signer)
    url, token = ready["url"], ready["token"]
    assert (await _get(url + "api/contents/notes.txt", token, "PUT", json={"type": "file", "format": "text", "content": "my work"}))[0] == 201
    await first.close()  # SIGTERM: a helm upgrade, a node drain
    assert (await _get(url + "api/contents/notes.txt", token))[1]["content"] == "my work"

    second = await aiohttp_server(make_app(config, broker_keys=broker_ring.public_set()))
    capacity = await _capacity(second, signer)
    assert (capacity.used, capacity.building) == (1, 0)
    assert (await _get(url + "api/contents/notes.txt", token))[1]["content"] == "my work"
    path = "/api/v1/launches/launch-0001"
    async with aiohttp.ClientSession() as session:
        assert (await session.delete(second.make_url(path), headers=signer.headers("DELETE", path))).status == 204
    assert kube.fake.objects["pods"] == {} and kube.fake.objects["secrets"] == {}
    assert (await _get(url + "api/status", token))[0] == 404  # no route left
    await second.close()


async def test_kubernetes_fake_api_orphans_adopted_or_reaped(kube: Kube, tmp_path: Path, proxy: Proxy) -> None:
    """What a SIGKILLed agent left: its Ready server is adopted (counted, routed, stoppable); the rest is deleted."""
    fake = kube.fake
    alive = seed_pod(fake, "launch-alive", status=running("127.0.0.50", ready=True))
    starting = seed_pod(fake, "launch-starting", status=None)
    failed = seed_pod(fake, "launch-failed", status={"phase": "Failed"})
    tokenless = seed_pod(fake, "launch-tokenless", status=running("127.0.0.51", ready=True), secret=False)
    fake.put("secrets", NS, {"metadata": {"name": "fed-stale", "labels": fake.objects["secrets"][(NS, alive)]["metadata"]["labels"]}})
    other = seed_pod(fake, "launch-other-member", status=running("127.0.0.52", ready=True), member="someone-else")
    backend = make_backend(tmp_path, kube, **with_proxy(proxy))
    await backend.start()
    assert await backend.adopt() == ["launch-alive"]
    assert sorted(n for _, n in fake.objects["pods"]) == sorted([alive, other])
    assert sorted(n for _, n in fake.objects["secrets"]) == sorted([alive, other])
    assert {starting, failed, tokenless} <= {d.split("/")[1] for d in fake.deleted}
    await until(lambda: len(backend.pods.items) == 1)
    capacity = await backend.capacity()
    assert (capacity.used, capacity.building) == (1, 0)
    assert (await proxy.routes())[f"/{alive}"]["target"] == f"http://127.0.0.50:{backend.config.server_port}"
    assert await backend.stop_server("launch-alive") is True
    assert f"/{alive}" not in await proxy.routes()
    await backend.detach()


async def test_kubernetes_fake_api_idle_server_is_culled(aiohttp_server: Any, tmp_path: Path) -> None:
    """A real server idle past idle_timeout (by its own /api/status) is culled; it also shuts itself down when idle."""
    kube = await start_fake(aiohttp_server, tmp_path, kubelet="process", ready_delay=0)
    clock = FakeClock(time.time())
    backend = make_backend(tmp_path, kube, clock=clock, start_timeout=90, server_port=free_port(), idle_timeout=600, max_age=None)
    await backend.start()
    ready = (await collect(launch_on(backend, request("launch-idle"))))[-1]
    assert ready.phase == "ready", ready.message
    name = object_name("launch-idle")
    args = kube.fake.objects["pods"][(NS, name)]["spec"]["containers"][0]["args"]
    assert "--ServerApp.shutdown_no_activity_timeout=600" in args and "--MappingKernelManager.cull_idle_timeout=600" in args
    clock.advance(570)
    assert await backend.cull_once() == []
    clock.advance(60)
    assert await backend.cull_once() == [name]
    assert kube.fake.objects["pods"] == {} and kube.fake.objects["secrets"] == {}
    await backend.stop()


async def test_kubernetes_fake_api_server_that_shut_itself_down_is_reaped(kube: Kube, tmp_path: Path) -> None:
    """jupyter-server's own idle shutdown ends the container: the watch sees the pod finish and the agent deletes it."""
    backend = make_backend(tmp_path, kube)
    await backend.start()
    await collect(launch_on(backend, request("launch-exit")))
    name = object_name("launch-exit")
    await kube.fake.exit_container(NS, name)
    await until(lambda: kube.fake.objects["pods"] == {} and kube.fake.objects["secrets"] == {})
    await until(lambda: not backend.pods.items)
    assert (await backend.capacity()).used == 0
    await backend.stop()


async def test_kubernetes_fake_api_culls_pods_older_than_max_age(kube: Kube, tmp_path: Path) -> None:
    """max_age by the injected clock; the pod also carries activeDeadlineSeconds for when the agent is away."""
    clock = FakeClock(time.time())  # the fake server stamps pods with the real time
    backend = make_backend(tmp_path, kube, clock=clock, max_age=600, idle_timeout=None)
    await backend.start()
    await collect(launch_on(backend, request("launch-k8s-0006")))
    name = object_name("launch-k8s-0006")
    assert kube.fake.objects["pods"][(NS, name)]["spec"]["activeDeadlineSeconds"] == 660
    assert await backend.cull_once() == []
    clock.advance(601)
    assert await backend.cull_once() == [name]
    assert kube.fake.objects["pods"] == {}
    await backend.stop()


async def test_kubernetes_fake_api_sigkilled_agent_leaves_nothing_counted_forever(aiohttp_server: Any, tmp_path: Path, broker_ring: Any, signer: Signer) -> None:
    """A real `fedmember serve` is SIGKILLed mid-launch: the next one adopts the ready server and deletes the half-started pod."""
    import asyncio
    import json
    import signal
    import subprocess

    import tomli_w

    kube = await start_fake(aiohttp_server, tmp_path, ready_delay=0.05)
    backend = settings(kube.kubeconfig, start_timeout=60)
    config = member_config(tmp_path, backend=backend)
    (tmp_path / "broker.jwks.json").write_text(json.dumps(broker_ring.public_set().to_jwks()))
    document = {"member": config.member.model_dump(mode="json", exclude_none=True),
                "broker": config.broker.model_dump(mode="json"), "backend": backend}
    (tmp_path / "member.toml").write_text(tomli_w.dumps(document))

    async def serve() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen([str(Path(sys.executable).with_name("fedmember")), "serve", "--config", str(tmp_path / "member.toml"),
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                await _get(f"{url}/.well-known/jwks.json")
                return proc, url
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        proc.kill()
        raise AssertionError("fedmember serve did not start")

    first, url = await serve()
    try:
        async with aiohttp.ClientSession() as session:
            body = launch_body(launch_id="launch-0001")
            resp = await session.post(f"{url}/api/v1/launches", data=body, headers=signer.headers("POST", "/api/v1/launches", body))
            ready = (await read_events(resp))[-1]
            assert ready["phase"] == "ready", ready
            kube.fake.hold.add(object_name("launch-0002"))
            body = launch_body(launch_id="launch-0002")
            resp = await session.post(f"{url}/api/v1/launches", data=body, headers=signer.headers("POST", "/api/v1/launches", body))
            async for line in resp.content:
                if b"Pending" in line:
                    break
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    finally:
        first.kill()
        first.wait(10)
    assert len(kube.fake.pods(NS)) == 2  # what the killed agent left

    second, url = await serve()
    try:
        capacity = await _capacity_at(url, signer)
        assert (capacity.used, capacity.building) == (1, 0)
        assert [p["metadata"]["name"] for p in kube.fake.pods(NS)] == [object_name("launch-0001")]
        assert sorted(n for _, n in kube.fake.objects["secrets"]) == [object_name("launch-0001")]
    finally:
        second.terminate()
        second.wait(30)
    assert [p["metadata"]["name"] for p in kube.fake.pods(NS)] == [object_name("launch-0001")], "a clean stop keeps the session"


async def _capacity_at(url: str, signer: Signer) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/status", headers=signer.headers("GET", "/api/v1/status")) as resp:
            signed = (await resp.json())["signed"]
        async with session.get(f"{url}/.well-known/jwks.json") as resp:
            keys = PublicKeySet.from_jwks(await resp.json())
    return verify_status_ad(signed, keys=keys, member_id=MEMBER_ID, clock=FakeClock(time.time())).capacity
