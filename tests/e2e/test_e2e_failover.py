"""A broker and three real member agents: a member killed mid-launch, and a dead member left out."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from e2ekit import candidate, check_ready, launch, repo_named, route, start_federation, stop_federation, wait_for_route
from fedbroker.demo.run import DemoFederation
from fedbroker.demo.repos import DEMO_DATASET

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoFederation]:
    federation = start_federation(tmp_path_factory.mktemp("federation"))
    yield federation
    stop_federation(federation)


async def test_member_killed_during_a_launch_costs_one_waiting_event(fed: DemoFederation) -> None:
    repo = repo_named(fed, "hello")
    killed: list[str] = []

    def kill_on_first_event(event: dict[str, Any]) -> None:
        # The first event comes from the chosen member once it started work: kill it mid-launch.
        if not killed:
            killed.append(event["member"])
            fed.kill_member(event["member"])

    events = await launch(fed.broker_url, repo.spec(), on_event=kill_on_first_event)
    ready = await check_ready(events)
    waiting = [e for e in events if e["phase"] == "waiting"]
    assert len(waiting) == 1, events
    assert waiting[0]["member"] == killed[0] and f"Member {killed[0]} could not launch this" in waiting[0]["message"]
    assert ready["member"] != killed[0]
    assert events.index(waiting[0]) < len(events) - 1
    fed.restart_member(killed[0])


async def test_killed_member_gets_no_new_launch_after_its_next_failed_poll(fed: DemoFederation) -> None:
    repo = repo_named(fed, "dataset")
    data = (DEMO_DATASET,)
    assert (await route(fed.broker_url, repo.spec(), data))["candidates"][0]["member_id"] == "berlin"
    fed.kill_member("berlin")
    killed_at = time.monotonic()

    # One failed poll makes it suspect (costly, ranked last); the next makes it unhealthy (unroutable).
    def left_out(decision: dict[str, Any]) -> bool:
        c = candidate(decision, "berlin")
        return not c["routable"] or c["parts"].get("suspect", 0.0) > 0

    decision = await wait_for_route(fed.broker_url, repo.spec(), left_out, "berlin left out", data, timeout=10)
    assert time.monotonic() - killed_at < 10.0  # polls are 0.5 s apart: this is the next failed one or so
    assert decision["candidates"][0]["member_id"] != "berlin"
    assert decision["candidates"][-1]["member_id"] == "berlin"
    decision = await wait_for_route(fed.broker_url, repo.spec(), lambda d: not candidate(d, "berlin")["routable"],
                                    "berlin unroutable", data, timeout=10)
    assert candidate(decision, "berlin")["reason"].startswith("unhealthy:"), decision

    events = await launch(fed.broker_url, repo.spec(), data)
    ready = await check_ready(events)
    assert ready["member"] != "berlin"
    assert all(e["member"] != "berlin" for e in events) and not any(e["phase"] == "waiting" for e in events)
    assert any(f"Dataset {DEMO_DATASET} is not stored at this member" in e.get("message", "") for e in events)

    fed.restart_member("berlin")  # back on its first good poll, and the dataset launch with it
    ready = await check_ready(await launch(fed.broker_url, repo.spec(), data))
    assert ready["member"] == "berlin"
