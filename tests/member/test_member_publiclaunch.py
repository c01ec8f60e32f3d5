"""The agent's public /build: a browser redirected by the broker launches with a ticket, and only with one."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from agentkit import BROKER_ID, MEMBER_ID, READY, FakeBackend, member_config, read_events

from fedmember.app import make_app
from fedproto.clock import FakeClock, SystemClock
from fedproto.keys import KeyDir, KeyRing
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec
from fedproto.tickets import sign_ticket

SPEC = "org/repo/main"
PATH = f"/build/gh/{SPEC}"


class RecordingBackend(FakeBackend):
    """The fake backend, remembering what it was asked to launch."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__(script)
        self.requests: list[LaunchRequest] = []

    async def launch(self, request: LaunchRequest, repo: RepoSpec):  # type: ignore[override]
        self.requests.append(request)
        async for event in super().launch(request, repo):
            yield event


def ticket(ring: KeyRing, clock: Any = None, **overrides: Any) -> str:
    args: dict[str, Any] = dict(issuer=BROKER_ID, audience=MEMBER_ID, provider="gh", spec=SPEC, data=[],
                                launch_id="launch-0001", clock=clock or SystemClock(), client_ip="192.0.2.7",
                                origin="http://127.0.0.1:9000", decision_id="dec-1")
    args.update(overrides)
    return sign_ticket(ring.signing_key, **args)


async def _agent(aiohttp_client: Any, tmp_path: Path, ring: KeyRing, backend: FakeBackend, **member: Any) -> Any:
    app = make_app(member_config(tmp_path, **member), backend=backend, broker_keys=ring.public_set(), keepalive_interval=0.1)
    return await aiohttp_client(app)


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend([LaunchEvent(phase="waiting", message="w\n"), READY.model_copy(update={"url": "/srv/x"})])


async def test_a_ticketed_launch_streams_binderhub_events_to_any_origin(aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, backend: RecordingBackend) -> None:
    client = await _agent(aiohttp_client, tmp_path, broker_ring, backend)
    resp = await client.get(PATH, params={"ticket": ticket(broker_ring)}, headers={"Origin": "null"})
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    events = await read_events(resp)
    assert [e["phase"] for e in events] == ["waiting", "ready"]
    ready = events[-1]
    # Absolute on the member's public URL, the member named, the broker as the launch host.
    assert ready["url"] == "http://127.0.0.1/srv/x/" and ready["member"] == MEMBER_ID
    assert ready["binder_launch_host"] == "http://127.0.0.1:2/"
    asked = backend.requests[0]
    # Who asked, as the broker saw it: the page origin for the server's CORS, the client address.
    assert (asked.launch_id, asked.origin, asked.client_ip, asked.decision_id) == ("launch-0001", "http://127.0.0.1:9000", "192.0.2.7", "dec-1")


async def _refusal(client: Any, path: str, token: str | None, **params: str) -> dict[str, Any]:
    query = {**({"ticket": token} if token is not None else {}), **params}
    resp = await client.get(path, params=query)
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    events = await read_events(resp)
    assert len(events) == 1 and events[0]["phase"] == "failed" and events[0]["status_code"] == 403, events
    return events[0]


async def test_a_replayed_ticket_is_refused(aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, backend: RecordingBackend) -> None:
    client = await _agent(aiohttp_client, tmp_path, broker_ring, backend)
    token = ticket(broker_ring)
    await read_events(await client.get(PATH, params={"ticket": token}))
    refused = await _refusal(client, PATH, token)
    assert "replayed" in refused["message"] and "Binder link" in refused["message"]
    assert len(backend.requests) == 1


@pytest.mark.parametrize(("case", "path", "params"), [
    ("expired", PATH, {}),
    ("other-member", PATH, {}),
    ("tampered-spec", "/build/gh/attacker/repo/main", {}),
    ("other-ref", "/build/gh/org/repo/v2", {}),
    ("data-added", PATH, {"data": "10.5281/zenodo.1"}),
    ("forged-payload", "/build/gh/attacker/repo/main", {}),
    ("other-key", PATH, {}),
    ("missing", PATH, {}),
])
async def test_a_ticket_that_does_not_open_this_launch_is_refused(
    aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, backend: RecordingBackend, case: str, path: str, params: dict
) -> None:
    client = await _agent(aiohttp_client, tmp_path, broker_ring, backend)
    token: str | None = ticket(broker_ring)
    if case == "expired":
        token = ticket(broker_ring, clock=FakeClock(SystemClock().now() - 120))
    elif case == "other-member":
        token = ticket(broker_ring, audience="site-b")
    elif case == "other-key":
        token = ticket(KeyRing.load_or_create(tmp_path / "other-keys"))
    elif case == "missing":
        token = None
    elif case == "forged-payload":
        header, payload, sig = ticket(broker_ring).split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["spec"] = "attacker/repo/main"
        token = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode(), sig])
    reason = {"expired": "expired", "other-member": "wrong_audience", "other-key": "unknown_key", "missing": "missing_token",
              "forged-payload": "bad_signature"}.get(case, "wrong_launch")
    refused = await _refusal(client, path, token, **params)
    assert f"({reason})" in refused["message"]
    assert backend.requests == []
    metrics = await (await client.get("/metrics")).text()
    assert f'fedmember_auth_failures_total{{reason="{reason}"}} 1.0' in metrics


async def test_a_member_that_keeps_browsers_out_refuses_even_good_tickets(aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, backend: RecordingBackend) -> None:
    client = await _agent(aiohttp_client, tmp_path, broker_ring, backend, public_launch=False)
    events = await read_events(await client.get(PATH, params={"ticket": ticket(broker_ring)}))
    assert events[0]["phase"] == "failed" and events[0]["status_code"] == 404 and backend.requests == []


async def test_the_signed_api_still_needs_a_request_token(aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, backend: RecordingBackend) -> None:
    """A launch ticket is no request token: it does not open the broker's API."""
    client = await _agent(aiohttp_client, tmp_path, broker_ring, backend)
    resp = await client.post("/api/v1/launches", headers={"Authorization": f"Bearer {ticket(broker_ring)}"}, data=b"{}")
    assert resp.status == 401 and (await resp.json())["error"] == "wrong_type"


async def test_preflight_is_answered(aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, backend: RecordingBackend) -> None:
    client = await _agent(aiohttp_client, tmp_path, broker_ring, backend)
    resp = await client.options(PATH, headers={"Origin": "https://book.example.org", "Access-Control-Request-Method": "GET",
                                               "Access-Control-Request-Headers": "x-xsrftoken"})
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Headers"] == "x-xsrftoken"


async def test_a_browser_that_leaves_stops_its_launch_without_a_traceback(
    aiohttp_client: Any, tmp_path: Path, broker_ring: KeyRing, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RecordingBackend([LaunchEvent(phase="building", message="b\n"), "hang"])
    # Keepalives far apart: the agent must notice the browser leaving without writing to it.
    app = make_app(member_config(tmp_path), backend=backend, broker_keys=broker_ring.public_set(), keepalive_interval=60)
    client = await aiohttp_client(app)
    resp = await client.get(PATH, params={"ticket": ticket(broker_ring)})
    await resp.content.readline()
    resp.close()
    for _ in range(50):
        if backend.stopped:
            break
        await asyncio.sleep(0.05)
    assert backend.stopped == ["launch-0001"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


async def test_the_status_ad_offers_the_ticket_endpoint_unless_browsers_are_kept_out(tmp_path: Path) -> None:
    from fedmember.healthcheck import HealthService
    from fedmember.statusad import StatusAdvertiser

    for public, expected in [(True, "ticket"), (False, None)]:
        config = member_config(tmp_path, public_launch=public)
        backend = FakeBackend()
        keys = KeyDir(None, config.load_keys())
        ad = await StatusAdvertiser(config, backend, HealthService(backend, SystemClock()), keys, SystemClock()).current()
        assert (ad.redirect.kind if ad.redirect else None) == expected
