"""The launch relay against member doubles: failover before ready, and what is never retried."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock
from fedproto.keys import KeyRing

from fedbroker.appkeys import HEALTH, METRICS
from fedbroker.config import BrokerConfig, HealthSettings, RoutingSettings
from brokerkit import broker_app, feed_health, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble, free_port

SSE = {"Accept": "text/event-stream"}
Fed = Callable[..., Awaitable[tuple[TestClient, dict[str, MemberDouble]]]]


@pytest.fixture
def fed(aiohttp_server: Any, aiohttp_client: Any) -> Fed:
    """Start doubles ``(id, behaviour)`` in rank order and a broker routing to them in that order."""

    async def start(*members: tuple[str, str], max_attempts: int = 5, **config: Any) -> tuple[TestClient, dict[str, MemberDouble]]:
        clock, keyring = FakeClock(), new_keyring()
        doubles: dict[str, MemberDouble] = {}
        entries = []
        for rank, (member_id, behaviour) in enumerate(members):
            d = MemberDouble(member_id, keyring.public_set(), clock, behaviour=behaviour)
            if behaviour == "refuse":
                d.url = f"http://127.0.0.1:{free_port()}"
            else:
                d.url = str((await aiohttp_server(d.app())).make_url("/"))
            # Earlier members get cached images so the ranking follows the given order.
            d.images = ["gh:org/repo"] if rank == 0 else []
            d.capacity = d.capacity.model_copy(update={"used": rank})
            doubles[member_id] = d
            entries.append(d.entry())
        routing = RoutingSettings(max_attempts=max_attempts, near_equal=0, event_timeout=2, connect_timeout=1)
        cfg = BrokerConfig(dev=True, routing=routing, health=HealthSettings(eject_after_failures=5), **config)
        app = broker_app(cfg, clock, keyring, snapshot_of(entries))
        feed_health(app, doubles.values())
        return await aiohttp_client(app), doubles

    return start


async def launch(client: TestClient) -> tuple[list[dict], Any]:
    resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
    assert resp.status == 200
    return parse_stream(await resp.text()), resp


async def test_good_member_relays_to_ready(fed: Fed) -> None:
    client, doubles = await fed(("good", "ok"))
    events, resp = await launch(client)
    assert [e["phase"] for e in events] == ["waiting", "ready"]
    assert all(e["member"] == "good" for e in events)
    ready = events[-1]
    assert ready["decision"] == resp.headers["X-Federation-Decision"]
    assert ready["url"] == f"https://good.example/user/{doubles['good'].launches[0].launch_id}/"
    assert doubles["good"].launches[0].decision_id == ready["decision"]
    # Like BinderHub, binder_launch_host names the Binder the user launched from: the broker.
    assert ready["binder_launch_host"] == BrokerConfig().public_url + "/"


async def test_failover_through_every_kind_of_member_failure(fed: Fed) -> None:
    client, doubles = await fed(
        ("refuses", "refuse"), ("errors", "http500"), ("full", "failed429"), ("dies", "die"), ("good", "ok"),
    )
    events, _ = await launch(client)
    waits = [e for e in events if e["phase"] == "waiting" and "could not launch" in e["message"]]
    assert [w["member"] for w in waits] == ["refuses", "errors", "full", "dies"]
    assert "trying member errors (attempt 2 of 5)" in waits[0]["message"]
    assert events[-1]["phase"] == "ready" and events[-1]["member"] == "good" and events[-1]["decision"]
    health = client.app[HEALTH]
    for member_id in ("refuses", "errors", "dies"):
        assert health.views()[member_id].success_rate < 1.0
    # A full member (429) is busy, not broken: the refusal is not held against its health.
    assert health.views()["full"].success_rate == 1.0
    metrics = client.app[METRICS].render().decode()
    assert 'fedbroker_failovers_total{member="dies"} 1.0' in metrics
    assert 'fedbroker_launches_total{member="good",outcome="ready"} 1.0' in metrics


async def test_a_member_that_does_not_serve_the_repository_is_passed_over_but_not_held_against(fed: Fed) -> None:
    client, _ = await fed(("picky", "failed501"), ("good", "ok"))
    for _ in range(4):  # more than eject_after_failures: a refusal must never eject it
        events, _ = await launch(client)
        assert events[-1]["phase"] == "ready" and events[-1]["member"] == "good"
        assert any(e["phase"] == "waiting" and e["member"] == "picky" for e in events)
    view = client.app[HEALTH].views()["picky"]
    assert view.success_rate == 1.0 and not view.ejected


@pytest.mark.parametrize("behaviour", ["failed503", "quota", "hang"], ids=["5xx-event", "quota-message", "timeout"])
async def test_other_retryable_failures(fed: Fed, behaviour: str) -> None:
    client, _ = await fed(("bad", behaviour), ("good", "ok"))
    events, _ = await launch(client)
    assert any(e["member"] == "bad" and "could not launch" in e["message"] for e in events)
    assert events[-1]["phase"] == "ready" and events[-1]["member"] == "good"


@pytest.mark.parametrize(("behaviour", "code"), [("failed404", 404), ("failed422", 422)], ids=["not-found", "unbuildable"])
async def test_repo_error_is_not_retried(fed: Fed, behaviour: str, code: int) -> None:
    client, doubles = await fed(("first", behaviour), ("second", "ok"))
    events, _ = await launch(client)
    assert events[-1] == {**events[-1], "phase": "failed", "status_code": code, "member": "first"}
    assert doubles["second"].launches == []
    assert client.app[HEALTH].views()["first"].success_rate == 1.0  # the repo's fault, not the member's


async def test_max_attempts_exhausted(fed: Fed) -> None:
    client, doubles = await fed(("a", "http500"), ("b", "failed429"), ("c", "ok"), max_attempts=2)
    events, _ = await launch(client)
    assert sum("could not launch" in e["message"] for e in events) == 1
    last = events[-1]
    assert last["phase"] == "failed" and last["status_code"] == 503
    assert "a: launch answered HTTP 500" in last["message"] and "b: Too many users" in last["message"]
    assert doubles["c"].launches == []


async def test_ejected_after_consecutive_failures_gets_no_more_launches(fed: Fed) -> None:
    client, doubles = await fed(("bad", "http500"), ("good", "ok"), max_attempts=2)
    client.app[HEALTH].member("bad")._s = client.app[HEALTH].member("bad")._s.model_copy(
        update={"eject_after_failures": 2})
    for _ in range(3):
        events, _ = await launch(client)
        assert events[-1]["member"] == "good"
    assert len(doubles["bad"].launches) == 2
