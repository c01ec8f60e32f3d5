"""Regression: when every member a decision listed has failed, the relay routes again.

Found by tests/reliability/test_reliability_chaos.py (60 s run): a launch decided while two
of three members were down listed only the third; that one was killed mid-launch and the
launch failed, although a restarted member had been healthy for seconds.
"""

from __future__ import annotations

import asyncio

from fedbroker.appkeys import HEALTH

from test_relay import SSE, Fed, fed  # noqa: F401  (the fixture)
from brokerkit import parse_stream


async def test_relay_routes_again_when_the_listed_members_are_used_up(fed: Fed) -> None:  # noqa: F811
    client, doubles = await fed(("hangs", "hang"), ("late", "ok"))
    late = client.app[HEALTH].member("late")
    late.record_poll(None, "down")
    late.record_poll(None, "down")  # unhealthy: the decision lists only "hangs"
    launch = asyncio.create_task(client.get("/build/gh/org/repo/HEAD", headers=SSE))
    for _ in range(200):
        if doubles["hangs"].launches:
            break
        await asyncio.sleep(0.01)
    assert doubles["hangs"].launches, "the launch never reached the first member"
    late.record_poll(doubles["late"].ad())
    late.record_poll(doubles["late"].ad())  # back while the first attempt hangs
    resp = await asyncio.wait_for(launch, 30)
    events = parse_stream(await resp.text())
    assert events[-1]["phase"] == "ready" and events[-1]["member"] == "late", events
    assert any("trying member late" in e.get("message", "") for e in events)


async def test_relay_gives_up_when_nothing_else_is_routable(fed: Fed) -> None:  # noqa: F811
    client, _ = await fed(("hangs", "hang"))
    resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
    events = parse_stream(await resp.text())
    assert events[-1]["phase"] == "failed" and "hangs" in events[-1]["message"]
