"""The launch service around any backend: framing, deadline, errors, DELETE, shutdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agentkit import READY, FakeBackend, Signer, launch_body, post_launch, read_events

from fedmember.app import make_app
from fedmember.backends.base import failed
from fedproto.launch import LaunchEvent


async def _client(aiohttp_client: Any, config: Any, backend: FakeBackend, broker_ring: Any, **kw: Any) -> Any:
    return await aiohttp_client(make_app(config, backend=backend, broker_keys=broker_ring.public_set(), **kw))


async def test_stream_ends_after_ready_with_launch_id(agent: Any, signer: Signer) -> None:
    resp = await post_launch(agent, signer, launch_body())
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = await read_events(resp)
    assert [e["phase"] for e in events] == ["waiting", "ready"]
    assert all(e["launch_id"] == "launch-0001" for e in events)
    assert events[-1]["url"].endswith("/") and events[-1]["token"] == "t"


async def test_bad_spec_is_a_failed_400_event(agent: Any, signer: Signer) -> None:
    for provider, spec in [("gh", "org/../x/main"), ("gh", "org/repo/--upload-pack=x"), ("git", "file%3A%2F%2F%2Fetc%2F..%2Fx/main;rm")]:
        events = await read_events(await post_launch(agent, signer, launch_body(spec, provider)))
        assert len(events) == 1 and events[0]["phase"] == "failed" and events[0]["status_code"] == 400, (provider, spec)


async def test_a_provider_this_member_does_not_serve_fails_over(agent: Any, signer: Signer) -> None:
    """Another member may serve it: 501 is in the failover half of the failure table, 400 is not."""
    events = await read_events(await post_launch(agent, signer, launch_body("10.5281/zenodo.1", "zenodo")))
    assert len(events) == 1 and events[0]["phase"] == "failed" and events[0]["status_code"] == 501
    assert "not supported by this member" in events[0]["message"]


async def test_malformed_request_body_is_400_json(agent: Any, signer: Signer) -> None:
    for body in [b"not json", json.dumps({"provider": "gh"}).encode(), launch_body(launch_id="bad id!")]:
        resp = await post_launch(agent, signer, body)
        assert resp.status == 400
        assert (await resp.json())["error"] == "bad_launch_request"


async def test_timeout_is_failed_504_and_stops_the_server(aiohttp_client: Any, tmp_path: Any, broker_ring: Any, signer: Signer) -> None:
    from agentkit import member_config

    backend = FakeBackend([LaunchEvent(phase="building", message="b\n"), "hang"])
    client = await _client(aiohttp_client, member_config(tmp_path, launch_timeout=0.3), backend, broker_ring, keepalive_interval=0.1)
    resp = await post_launch(client, signer, launch_body())
    raw = (await resp.read()).decode()
    assert ":keepalive" in raw
    events = [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:")]
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 504
    assert backend.stopped == ["launch-0001"] and not backend.running
    assert 'fedmember_launches_total{outcome="timeout"} 1.0' in await (await client.get("/metrics")).text()


async def test_backend_exception_is_failed_500_without_detail(aiohttp_client: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    client = await _client(aiohttp_client, config, FakeBackend(["raise"]), broker_ring)
    events = await read_events(await post_launch(client, signer, launch_body()))
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 500
    assert "secret" not in json.dumps(events)


async def test_backend_ending_without_result_is_failed(aiohttp_client: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    client = await _client(aiohttp_client, config, FakeBackend([LaunchEvent(phase="waiting")]), broker_ring)
    events = await read_events(await post_launch(client, signer, launch_body()))
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 500


async def test_failed_launch_stops_its_server(aiohttp_client: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    backend = FakeBackend([failed("full", 429)])
    client = await _client(aiohttp_client, config, backend, broker_ring)
    events = await read_events(await post_launch(client, signer, launch_body()))
    assert events[-1]["status_code"] == 429 and backend.stopped == ["launch-0001"]


async def test_delete_running_and_unknown(agent: Any, signer: Signer, fake_backend: FakeBackend) -> None:
    await read_events(await post_launch(agent, signer, launch_body()))
    path = "/api/v1/launches/launch-0001"
    assert (await agent.delete(path, headers=signer.headers("DELETE", path))).status == 204
    resp = await agent.delete(path, headers=signer.headers("DELETE", path))
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_launch"


async def test_delete_in_progress_ends_the_stream(aiohttp_client: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    backend = FakeBackend([LaunchEvent(phase="building", message="b\n"), "hang"])
    client = await _client(aiohttp_client, config, backend, broker_ring)
    resp = await post_launch(client, signer, launch_body())
    first = await resp.content.readline()
    assert b"building" in first
    path = "/api/v1/launches/launch-0001"
    assert (await client.delete(path, headers=signer.headers("DELETE", path))).status == 204
    events = await read_events(resp)
    assert events[-1]["phase"] == "failed" and "cancelled" in events[-1]["message"]
    assert "launch-0001" in backend.stopped


async def test_duplicate_launch_id_is_409(aiohttp_client: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    client = await _client(aiohttp_client, config, FakeBackend(["hang"]), broker_ring)
    task = asyncio.ensure_future(post_launch(client, signer, launch_body()))
    await asyncio.sleep(0.1)
    resp = await post_launch(client, signer, launch_body())
    assert resp.status == 409 and (await resp.json())["error"] == "duplicate_launch"
    first = await task
    first.close()


async def test_shutdown_ends_open_streams_and_stops_servers(aiohttp_server: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    import aiohttp

    backend = FakeBackend([LaunchEvent(phase="building", message="b\n"), "hang"])
    server = await aiohttp_server(make_app(config, backend=backend, broker_keys=broker_ring.public_set()))
    async with aiohttp.ClientSession() as session:
        body = launch_body()
        resp = await session.post(server.make_url("/api/v1/launches"), data=body, headers=signer.headers("POST", "/api/v1/launches", body))
        assert b"building" in await resp.content.readline()
        closing = asyncio.ensure_future(server.close())
        events = await read_events(resp)
        await closing
    assert events[-1]["phase"] == "failed" and "shutting down" in events[-1]["message"]
    assert backend.stopped == ["launch-0001"] and backend.stopped_all


async def test_build_route_ends_in_built(aiohttp_client: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    client = await _client(aiohttp_client, config, FakeBackend(), broker_ring)
    events = await read_events(await post_launch(client, signer, launch_body(), "/api/v1/builds"))
    assert events[-1]["status_code"] == 501  # the base class cannot build


def test_ready_fixture_is_terminal() -> None:
    assert READY.terminal


class SurvivingBackend(FakeBackend):
    """A fake backend whose servers outlive the agent: ``site`` stands for the compute both agent processes see."""

    def __init__(self, script: list[Any], site: set[str]) -> None:
        super().__init__(script)
        self.site = site
        self.detached = False

    async def adopt(self) -> list[str]:
        self.running |= self.site
        return sorted(self.site)

    async def launch(self, request: Any, repo: Any) -> Any:
        async for event in super().launch(request, repo):
            if event.phase == "ready":
                self.site.add(request.launch_id)
            yield event

    async def stop_server(self, launch_id: str) -> bool:
        self.site.discard(launch_id)
        return await super().stop_server(launch_id)

    async def detach(self) -> None:
        self.detached = True


async def test_agent_restart_keeps_ready_servers_of_a_backend_that_adopts(aiohttp_server: Any, config: Any, broker_ring: Any, signer: Signer) -> None:
    """Shutdown calls detach(), not stop(); the next agent adopts the server, counts it and can DELETE it by launch id."""
    import aiohttp

    site: set[str] = set()
    first = SurvivingBackend([READY], site)
    server = await aiohttp_server(make_app(config, backend=first, broker_keys=broker_ring.public_set()))
    async with aiohttp.ClientSession() as session:
        body = launch_body()
        resp = await session.post(server.make_url("/api/v1/launches"), data=body, headers=signer.headers("POST", "/api/v1/launches", body))
        assert (await read_events(resp))[-1]["phase"] == "ready"
    await server.close()
    assert first.detached and not first.stopped_all and first.stopped == [] and site == {"launch-0001"}

    second = SurvivingBackend([READY], site)
    server = await aiohttp_server(make_app(config, backend=second, broker_keys=broker_ring.public_set()))
    async with aiohttp.ClientSession() as session:
        assert (await second.capacity()).used == 1
        path = "/api/v1/launches/launch-0001"
        resp = await session.delete(server.make_url(path), headers=signer.headers("DELETE", path))
        assert resp.status == 204
    await server.close()
    assert site == set() and second.stopped == ["launch-0001"]
