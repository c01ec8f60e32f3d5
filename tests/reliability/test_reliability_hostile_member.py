"""A hostile member: enrolled like any other, then lying. It gets nothing it should not.

Two small real agent processes (``hostile_agent.py``) enroll with a real ``fedbroker serve``:
``liar`` and ``honest``. Routing tries the liar first (``honest`` has a tiny admin weight).
Each test switches the liar to one lie and launches through the broker as a client would:

* a ``ready.url`` on another host, or ``javascript:``: the launch fails over to ``honest`` and
  the liar is charged with a failure; the user's browser never sees the liar's URL;
* extra and forged fields: the client sees only BinderHub's fields and the broker's own;
* a 10 MB event line, or a 30 MB event over many lines: a protocol error, failover, a failure,
  and the client's stream stays a clean event stream (no ``HTTP/1.1 500`` written into it);
* an ad claiming dataset prefixes ``10.``, ``s`` and ``h`` and capacity 100000: routing believes
  the registry (the dataset's declared holder wins), and the capacity is capped;
* a dataset whose provider allows only ``honest``: the liar never gets it, and with ``honest``
  drained the launch fails closed naming the policy;
* endless streams: one client cannot hold more than its share of open launch streams.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from fedbroker.launch.events import BINDERHUB_FIELDS, BROKER_FIELDS

from hostilekit import BrokerProcess, HostileAgent, leftovers, wait_until

pytestmark = pytest.mark.slow

REPO = "gh/org/analysis/HEAD"
REPO_KEY = "gh:org/analysis"
DOI = "10.5281/zenodo.777"
PREFER_LIAR = {"images": [REPO_KEY]}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, HostileAgent, HostileAgent]]:
    root = Path(tmp_path_factory.mktemp("hostile-member"))
    broker = BrokerProcess(root, top={"dev": True}, sections={
        "health": {"interval": 0.5, "unhealthy_interval": 0.5, "healthy_after": 1, "eject_after_failures": 100,
                   "max_member_capacity": 50},
        # honest's weight (0.01, below) costs it 99,000 s: the liar is always tried first.
        "routing": {"max_attempts": 2, "near_equal": 0.0, "weight_seconds": 1000.0, "failure_seconds": 0.0,
                    "max_event_bytes": 256 * 1024,
                    "max_launch_event_bytes": 4 * 1024 * 1024, "keepalive": 1.0},
        "rate_limit": {"streams_per_client": 2},
    })
    liar, honest = HostileAgent(root / "liar", "liar"), HostileAgent(root / "honest", "honest")
    try:
        broker.start()
        for agent in (liar, honest):
            agent.start()
            agent.lie(ad=PREFER_LIAR if agent is liar else {})
            assert agent.enroll(broker)["state"] == "active"
        broker.admin().call("PATCH", "/api/v1/members/honest", {"weight": 0.01})
        wait_until(lambda: all(m["routable"] for m in _federation(broker)["members"]) and
                   len(_federation(broker)["members"]) == 2, what="both members routable")
        yield broker, liar, honest
    finally:
        for process in (liar, honest, broker):
            process.stop()
        assert leftovers(root) == [], "a process outlived the attack"


def _federation(broker: BrokerProcess) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(broker.url + "/api/v1/federation", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def _member(broker: BrokerProcess, member_id: str) -> dict[str, Any]:
    return next(m for m in _federation(broker)["members"] if m["id"] == member_id)


async def _launch(broker: BrokerProcess, target: str = REPO, data: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    # Each attack starts from a quiet federation: the previous attack's launches count as
    # provisional load until the members' next ads, and a full member would change the choice.
    wait_until(lambda: all(m["load"] == 0 for m in _federation(broker)["members"]), what="no load left over")
    url = f"{broker.url}/build/{target}" + (f"?data={data}" if data else "")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        async with http.get(url, headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode()
    events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    return text, events


def _outcomes(broker: BrokerProcess, member_id: str) -> list[str]:
    return [o["outcome"] for o in _member(broker, member_id)["recent_outcomes"]]


@pytest.mark.parametrize("lie", ["foreign-url", "javascript-url", "huge-line", "huge-event"])
async def test_lies_in_the_launch_fail_over_and_count_against_the_liar(federation, lie: str) -> None:
    broker, liar, honest = federation
    liar.lie(ad=PREFER_LIAR, launch=lie)
    tried = len(liar.launches())
    failed_before = _outcomes(broker, "liar").count("failed")
    text, events = await _launch(broker)
    assert len(liar.launches()) == tried + 1, "routing did not try the liar first"
    ready = events[-1]
    assert ready["phase"] == "ready" and ready["member"] == "honest"
    assert ready["url"].startswith(honest.url + "/")
    assert "evil.example" not in text and "javascript:" not in text
    assert "HTTP/1.1" not in text and "x" * 1000 not in text and "y" * 1000 not in text
    assert any(e["phase"] == "waiting" and e.get("member") == "liar" and "trying member honest" in e["message"]
               for e in events)
    assert _outcomes(broker, "liar").count("failed") == failed_before + 1


async def test_extra_and_forged_fields_never_reach_the_client(federation) -> None:
    broker, liar, _honest = federation
    liar.lie(ad=PREFER_LIAR, launch="extra-fields")
    text, events = await _launch(broker)
    assert events[-1]["phase"] == "ready" and events[-1]["member"] == "liar", events
    for event in events:
        assert set(event) <= BINDERHUB_FIELDS | BROKER_FIELDS, event
        assert event["member"] == "liar"
    assert "evil" not in text and "injected" not in text and "someone-else" not in text and "forged" not in text
    assert "javascript:" not in text


async def test_a_lying_status_ad_wins_nothing(federation) -> None:
    broker, liar, honest = federation
    liar.lie(ad={**PREFER_LIAR, "capacity": {"total": 100_000, "used": 0},
                 "datasets": [{"id": "10.", "prefix": True}, {"id": "s", "prefix": True}, {"id": "h", "prefix": True}]})
    broker.admin().call("POST", "/api/v1/datasets", {"id": DOI, "holders": ["honest"]})
    wait_until(lambda: (_member(broker, "liar")["capacity"] or {}).get("total") == 50, what="the liar's capped ad")
    assert _member(broker, "liar")["datasets"] == []  # the public page shows what routing believes
    decision = broker.admin().call("GET", f"/api/v1/route?provider=gh&spec=org/analysis/HEAD&data={DOI}")
    assert decision["candidates"][0]["member_id"] == "honest"
    liar_row = next(c for c in decision["candidates"] if c["member_id"] == "liar")
    assert "does not store the data" in liar_row["reason"]
    liar.lie(ad=PREFER_LIAR, launch="honest")
    _text, events = await _launch(broker, data=DOI)
    assert events[-1]["member"] == "honest"
    broker.admin().call("DELETE", f"/api/v1/datasets?id={DOI}")


async def test_a_data_providers_policy_holds_and_fails_closed(federation) -> None:
    broker, liar, honest = federation
    liar.lie(ad=PREFER_LIAR, launch="honest")
    broker.admin().call("POST", "/api/v1/datasets", {"id": DOI, "holders": [], "servers": ["honest"]})
    try:
        seen = len(liar.launches())
        _text, events = await _launch(broker, data=DOI)
        assert events[-1]["member"] == "honest" and len(liar.launches()) == seen
        broker.admin().member_action("honest", "drain")
        _text, events = await _launch(broker, data=DOI)
        assert events[-1]["phase"] == "failed"
        assert f"not allowed to serve {DOI} (its data provider allows: honest)" in events[-1]["message"]
        assert len(liar.launches()) == seen
        # A launch without the dataset still goes anywhere.
        _text, events = await _launch(broker)
        assert events[-1]["member"] == "liar"
    finally:
        broker.admin().member_action("honest", "undrain")
        broker.admin().call("DELETE", f"/api/v1/datasets?id={DOI}")


async def test_one_client_cannot_hold_every_stream(federation) -> None:
    broker, liar, _honest = federation
    liar.lie(ad=PREFER_LIAR, launch="stall")
    async with aiohttp.ClientSession() as http:
        held = [await http.get(f"{broker.url}/build/{REPO}", headers={"Accept": "text/event-stream"}) for _ in range(2)]
        try:
            _text, events = await _launch(broker)
            assert events == [{"phase": "failed", "status_code": 429,
                               "message": "Too many launches open from your address at once; wait for one to finish.\n"}]
        finally:
            for resp in held:
                resp.close()
    liar.lie(ad=PREFER_LIAR, launch="honest")
    # The broker notices the disconnects at its next keepalive write (routing.keepalive) and frees the slots.
    for _ in range(20):
        _text, events = await _launch(broker)
        if events[-1]["phase"] == "ready":
            break
        await asyncio.sleep(0.5)
    assert events[-1]["phase"] == "ready", events
