"""Version skew: institutions upgrade on their own schedules (FEDERATION.md, "Protocol versions").

Two directions, each against this release's real apps:

* a member one minor version ahead (extra fields in its status ad and events, optional
  fields left out) against this broker's poller, member client, relay and front door;
* this member agent against a broker one minor version ahead (extra fields in launch
  requests, optional fields left out);

and in both directions a peer of the next major version is refused with an error that
names both versions, never misread.
"""

from __future__ import annotations

import json
import random
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fedproto.clock import FakeClock
from fedproto.tokens import sign_document
from fedproto.version import PROTOCOL, PROTOCOL_HEADER

from fedbroker.appkeys import HEALTH
from fedbroker.config import BrokerConfig, HealthSettings, RoutingSettings
from fedbroker.launch.memberclient import MemberClient
from fedbroker.launch.poller import Poller
from fedbroker.registry.snapshot import SnapshotHolder
from fedbroker.routing.health import HealthState, HealthTable
from fedmember.app import make_app as make_agent
from fedproto.keys import KeyRing, PrivateKey

from agentkit import READY, FakeBackend, Signer, member_config, read_events
from brokerkit import broker_app, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble

NEWER_MINOR = f"{PROTOCOL.major}.{PROTOCOL.minor + 7}"
NEXT_MAJOR = f"{PROTOCOL.major + 1}.0"


# -- a newer member against this broker ----------------------------------------------------

class NewerMember(MemberDouble):
    """Speaks ``protocol``: its ads and events carry fields this release does not know, and its
    ad leaves out every optional field."""

    protocol: str = NEWER_MINOR

    def app(self) -> web.Application:
        app = super().app()

        async def announce(request: web.Request, response: web.StreamResponse) -> None:
            response.headers[PROTOCOL_HEADER] = self.protocol

        app.on_response_prepare.append(announce)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        await self._check(request)
        now = self.clock.now()
        ad = {  # only the required fields of this release, plus the newer release's own
            "member_id": self.member_id, "instance_id": "newer", "generation": 1, "issued_at": now,
            "expires_at": now + 60, "healthy": True, "backend": "quantum",
            "capacity": {"total": 8, "used": 1, "gpus": {"total": 4, "used": 1}},
            "accelerators": [{"kind": "gpu", "model": "H100"}], "carbon_intensity": 42.0,
        }
        return web.json_response({"signed": sign_document(self.keyring.signing_key, issuer=self.member_id,
                                                          payload=ad, clock=self.clock, ttl=60),
                                   "next_poll_hint": 30})

    async def _launch(self, request: web.Request) -> web.StreamResponse:
        body = await self._check(request)
        self.launches.append(json.loads(body))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"phase": "waiting", "message": "queued\\n", "queue_position": 3}\n\n')
        await resp.write(b": keepalive from the future\n\n")
        ready = {"phase": "ready", "message": "server running\n", "url": "/user/x/", "token": "tok",
                 "accelerator": {"kind": "gpu", "model": "H100"}}
        await resp.write(b"data: " + json.dumps(ready).encode() + b"\n\n")
        await resp.write_eof()
        return resp



async def _member_and_broker(aiohttp_server: Any, session: aiohttp.ClientSession, protocol: str) -> Any:
    clock, keyring = FakeClock(), new_keyring()
    member = NewerMember("future", keyring.public_set(), clock)
    member.protocol = protocol
    member.url = str((await aiohttp_server(member.app())).make_url("/"))
    holder = SnapshotHolder(snapshot_of([member.entry()]))
    health = HealthTable(HealthSettings(unhealthy_after=1), clock, random.Random(0))
    client = MemberClient(BrokerConfig(dev=True), keyring, clock, session)
    return member, health, Poller(holder, health, client, HealthSettings(), clock), keyring, clock


async def test_this_broker_reads_a_newer_members_status_ad(aiohttp_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        member, health, poller, _, _ = await _member_and_broker(aiohttp_server, session, NEWER_MINOR)
        await poller.poll_due()
        view = health.views()["future"]
    assert view.state is HealthState.healthy, view.last_error
    assert view.ad is not None and view.ad.capacity.total == 8 and view.ad.backend == "quantum"
    assert view.ad.providers == [] and view.ad.images.total == 0  # left out: this release's defaults


async def test_this_broker_relays_a_newer_members_launch_with_its_new_fields(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    async with aiohttp.ClientSession() as session:
        member, health, poller, keyring, clock = await _member_and_broker(aiohttp_server, session, NEWER_MINOR)
        await poller.poll_due()
        routing = RoutingSettings(event_timeout=5, connect_timeout=2)
        app = broker_app(BrokerConfig(dev=True, routing=routing), clock, keyring, snapshot_of([member.entry()]))
        app[HEALTH].member("future").record_poll(health.views()["future"].ad)
        client = await aiohttp_client(app)
        resp = await client.get("/build/gh/org/repo/HEAD", headers={"Accept": "text/event-stream"})
        events = parse_stream(await resp.text())
    assert resp.headers[PROTOCOL_HEADER] == str(PROTOCOL)
    assert member.launches[0]["provider"] == "gh"
    assert events[-1]["phase"] == "ready" and events[-1]["member"] == "future"
    # Fields this release does not know are ignored: not an error, and not relayed to clients either
    # (the broker passes on only the event fields it knows; fedbroker.launch.events).
    assert "accelerator" not in events[-1] and [e["phase"] for e in events] == ["waiting", "ready"]


async def test_this_broker_refuses_a_member_of_the_next_major_version_by_name(aiohttp_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        _, health, poller, _, _ = await _member_and_broker(aiohttp_server, session, NEXT_MAJOR)
        await poller.poll_due()
        view = health.views()["future"]
    assert view.state is HealthState.unhealthy
    assert f"member future speaks federation protocol {NEXT_MAJOR}, but this side speaks {PROTOCOL.major}.x" in (
        view.last_error or "")


# -- this member against a newer broker ----------------------------------------------------

@pytest.fixture
async def agent(aiohttp_client: Any, tmp_path: Any) -> Any:
    ring = KeyRing([PrivateKey.generate()])
    backend = FakeBackend([READY])
    client = await aiohttp_client(make_agent(member_config(tmp_path), backend=backend, broker_keys=ring.public_set()))
    return client, ring, backend


async def _post(agent: Any, body: dict[str, Any], protocol: str | None) -> aiohttp.ClientResponse:
    client, ring, _ = agent
    raw = json.dumps(body).encode()
    headers = Signer(ring).headers("POST", "/api/v1/launches", raw)
    if protocol is not None:
        headers[PROTOCOL_HEADER] = protocol
    return await client.post("/api/v1/launches", data=raw, headers=headers)  # type: ignore[no-any-return]


async def test_this_member_launches_for_a_newer_broker(agent: Any) -> None:
    body = {"provider": "gh", "spec": "org/repo/main", "launch_id": "launch-0001",
            "priority": "interactive", "placement": {"zone": "eu-west", "spread": True}}
    resp = await _post(agent, body, NEWER_MINOR)
    events = await read_events(resp)
    assert resp.status == 200 and resp.headers[PROTOCOL_HEADER] == str(PROTOCOL)
    assert events[-1]["phase"] == "ready"
    assert agent[2].repos[0].key == "gh:org/repo"


@pytest.mark.parametrize("protocol", [None, "1.0", str(PROTOCOL)], ids=["before-versioning", "previous-minor", "same"])
async def test_this_member_launches_with_only_the_required_fields(agent: Any, protocol: str | None) -> None:
    resp = await _post(agent, {"provider": "gh", "spec": "org/repo/main", "launch_id": "launch-0002"}, protocol)
    assert (await read_events(resp))[-1]["phase"] == "ready"


async def test_this_member_refuses_a_broker_of_the_next_major_version_by_name(agent: Any) -> None:
    body = {"provider": "gh", "spec": "org/repo/main", "launch_id": "launch-0003"}
    resp = await _post(agent, body, NEXT_MAJOR)
    payload = await resp.json()
    assert resp.status == 400 and payload["error"] == "unsupported_protocol_version"
    assert f"the broker speaks federation protocol {NEXT_MAJOR}, but this side speaks {PROTOCOL.major}.x" in payload["message"]
    assert agent[2].repos == []  # nothing launched


async def test_this_broker_refuses_a_caller_of_the_next_major_version(aiohttp_client: Any) -> None:
    app = broker_app(BrokerConfig(dev=True), FakeClock(), new_keyring(), snapshot_of([]))
    client = await aiohttp_client(app)
    refused = await client.get("/versions", headers={PROTOCOL_HEADER: NEXT_MAJOR})
    assert refused.status == 400 and (await refused.json())["error"] == "unsupported_protocol_version"
    assert (await client.get("/versions", headers={PROTOCOL_HEADER: NEWER_MINOR})).status == 200
