"""Chaos: three real member agents behind a broker under a steady launch load, killed and
restarted at random (seeded), never all at once.

Asserts that every launch ends ``ready`` (at least one member is always healthy), that no
decision chose a member after the broker had seen it fail, and that the broker's memory
stays flat. The chaos lasts 30 s in ``make test`` (the suite's time budget) and 60 s, as the
issue asks, with ``FEDERATION_CHAOS_SECONDS=60``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Iterator

import pytest

from fedbroker.demo.run import DemoFederation
from fedbroker.demo.sites import SITES

from chaoskit import LaunchLoad, decisions_to_failed_members

pytestmark = pytest.mark.slow

CHAOS_SECONDS = float(os.environ.get("FEDERATION_CHAOS_SECONDS", "30"))
SEED = int(os.environ.get("FEDERATION_CHAOS_SEED", "8"))
# Fast detection, so a kill is seen within about a second.
BROKER_SETTINGS = {"health": {"interval": 0.5, "timeout": 1.0, "unhealthy_interval": 1.0, "unhealthy_after": 1,
                              "healthy_after": 1}}
RSS_GROWTH_LIMIT = 40 * 2**20
# Room for the whole load on any single member: what is tested is failure handling, and a
# member that is full is rightly refused (the demo's smallest site has 2 slots).
CAPACITY = 6


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[DemoFederation]:
    sites = [dataclasses.replace(site, capacity=CAPACITY) for site in SITES]
    fed = DemoFederation(tmp_path / "fed", port=0, sites=sites, broker_settings=BROKER_SETTINGS)
    try:
        fed.start(timeout=120)
        yield fed
    finally:
        fed.stop()  # members first: each stops its own jupyter-servers; leftovers are swept


def _chaos(fed: DemoFederation, seconds: float, rng: random.Random) -> list[tuple[float, str, str]]:
    """Kill and restart members at random for ``seconds``; at least one stays up. Returns the actions."""
    actions = []
    down: list[str] = []
    ids = sorted(fed.members)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(1.5, 4.0))
        up = [m for m in ids if m not in down]
        if down and (len(up) == 1 or rng.random() < 0.5):
            member = down.pop(rng.randrange(len(down)))
            fed.restart_member(member, timeout=90)
            actions.append((time.time(), "restart", member))
        else:
            member = rng.choice(up)
            fed.kill_member(member)
            down.append(member)
            actions.append((time.time(), "kill", member))
    for member in down:
        fed.restart_member(member, timeout=90)
        actions.append((time.time(), "restart", member))
    return actions


def test_launches_survive_members_dying(federation: DemoFederation) -> None:
    fed = federation
    hello = next(r for r in fed.repos if r.name == "hello")
    agents = {m.member_id: m.agent_url for m in fed.members.values()}
    assert fed.broker is not None and fed.broker.pid is not None
    load = LaunchLoad(fed.broker_url, f"/build/git/{hello.spec()}", agents, fed.broker_config.parent, every=1.0)
    load.start()
    time.sleep(3)  # first launches build the environment: measure memory from a warm broker
    rss_start = _rss(fed.broker.pid)
    actions = _chaos(fed, CHAOS_SECONDS, random.Random(SEED))
    load.stop()
    rss_end = _rss(fed.broker.pid)

    assert any(a[1] == "kill" for a in actions), actions
    assert len(load.launches) >= CHAOS_SECONDS / 3, len(load.launches)
    failed = [(l.phase, l.member, l.message) for l in load.launches if l.phase != "ready"]
    assert not failed, "\n".join(map(str, [*failed, *actions]))
    assert len({l.member for l in load.launches}) >= 2, "failover never moved a launch"
    log = (fed.directory / "logs" / "broker.log").read_text()
    assert decisions_to_failed_members(log) == []
    assert "Traceback" not in log
    assert rss_end - rss_start < RSS_GROWTH_LIMIT, (rss_start, rss_end)
