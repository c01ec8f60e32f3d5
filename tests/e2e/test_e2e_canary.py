"""Canaries against three real member agents: a member whose servers cannot start (its agent and ad
stay fine) is ejected by canaries before a user launch goes there and comes back once fixed;
measured time-to-ready changes a dry run; canaries never leave their slot.

Faults are real: each member's local backend starts its servers through ``server_wrapper``, a
shell script that reads the member's fault file at every server start: empty runs the server,
``fail`` exits 3 (the server command is broken), ``slow N`` sleeps N seconds first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from e2ekit import candidate, check_ready, launch, repo_named, route, stop_federation, wait_for_route
from fedbroker.adminclient import AdminClient
from fedbroker.demo.run import DemoFederation
from fedbroker.demo.sites import SITES

pytestmark = pytest.mark.slow

# The canary interval; a broken member must be out within two of them. Under a loaded machine a
# canary takes up to ~10 s here, and the one running when the fault comes may still pass.
INTERVAL = 10.0
SETTINGS: dict[str, dict[str, Any]] = {
    "health": {"interval": 0.5, "timeout": 1.0, "unhealthy_interval": 0.5, "jitter": 0.1, "ewma_alpha": 0.5},
    # No load part: the demo's members differ in size, so idle ones differ in load by 20-50 s (the
    # headroom prices a small member dearer), which a 20 s slowdown need not outweigh; here the
    # ready-time part alone must move the choice.
    "routing": {"event_timeout": 30.0, "keepalive": 5.0, "near_equal": 1.0, "load_seconds": 0.0},
    "canary": {"interval": INTERVAL, "retry_interval": 1.0, "jitter": 0.1, "eject_after": 2, "timeout": 60.0,
               "check_timeout": 5.0},
}
FAULT_SCRIPT = """#!/bin/sh
# usage: fault.sh FAULT_FILE COMMAND...: what the member's servers suffer now, then the server.
fault=$(cat "$1" 2>/dev/null); shift
case "$fault" in
  fail) echo "test fault: the server command is broken" >&2; exit 3 ;;
  slow*) sleep "${fault#slow }" ;;
esac
exec "$@"
"""
NEVER_LAUNCHED = "org/never-launched/HEAD"  # a dry-run target no member has an image of


class Faults:
    """Each member's fault file, and a watcher that counts the canary launches each member holds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.script = directory / "fault.sh"
        self.script.write_text(FAULT_SCRIPT)
        self.most_canaries: dict[str, int] = {}
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def file(self, member_id: str) -> Path:
        return self.directory / f"{member_id}.fault"

    def set(self, member_id: str, fault: str) -> None:
        self.file(member_id).write_text(fault)

    def wrapper(self, member_id: str) -> list[str]:
        return ["/bin/sh", str(self.script), str(self.file(member_id))]

    def _watch(self) -> None:
        # A canary's launch keeps a work directory named by its launch id while it prepares or runs.
        while not self._stop.wait(0.05):
            for member_dir in (self.directory / "fed" / "members").glob("*"):
                servers = member_dir / "state" / "local" / "servers"
                held = len(list(servers.glob("canary-*"))) if servers.is_dir() else 0
                self.most_canaries[member_dir.name] = max(held, self.most_canaries.get(member_dir.name, 0))

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=5)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    f = Faults(tmp_path_factory.mktemp("canary"))
    for site in SITES:
        f.set(site.member_id, "")
    yield f
    f.stop()


@pytest.fixture(scope="module")
def fed(faults: Faults) -> Iterator[DemoFederation]:
    sites = [dataclasses.replace(s, extra={**s.extra, "server_wrapper": faults.wrapper(s.member_id)}) for s in SITES]
    federation = DemoFederation(faults.directory / "fed", port=0, sites=sites, broker_settings=SETTINGS)
    try:
        federation.start(timeout=90)
        faults.start()
        yield federation
    finally:
        stop_federation(federation)


async def summary(fed: DemoFederation) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(f"{fed.broker_url}/api/v1/federation") as resp:
            return dict(await resp.json())


async def member(fed: DemoFederation, member_id: str) -> dict[str, Any]:
    return next(m for m in (await summary(fed))["members"] if m["id"] == member_id)


async def wait_canaries(fed: DemoFederation, predicate: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = await summary(fed)
        if predicate(s):
            return s
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout:g} s: {s}")


async def metric(fed: DemoFederation, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{fed.broker_url}/metrics")).text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}{{{re.escape(want)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_canaries_prove_every_member_and_measure_time_to_ready(fed: DemoFederation, faults: Faults) -> None:
    s = await wait_canaries(fed, lambda s: all(m["canary"] and m["canary"]["ok"] for m in s["members"]),
                            "a passing canary on every member")
    for m in s["members"]:
        assert m["canaries"] == "on" and m["canary"]["time_to_ready"] > 0 and m["canary"]["reason"] is None
        assert m["canary"]["launch_seconds"] is not None and m["canary"]["build_seconds"] is not None
    # Canaries are not user launches: no user launch was counted anywhere.
    assert all(w["launches"] == 0 for w in s["slo"])
    assert await metric(fed, "fedbroker_canaries_total", member="tokyo", outcome="ok") >= 1

    before = await route(fed.broker_url, NEVER_LAUNCHED, provider="gh")
    slow = before["candidates"][0]["member_id"]
    # Far slower than the noise of a loaded machine (canaries here take 2 to 12 s to ready).
    faults.set(slow, "slow 20")

    def moved(d: dict[str, Any]) -> bool:
        parts = {c["member_id"]: c["parts"].get("ready_time", 0.0) for c in d["candidates"] if c["routable"]}
        others = [v for m, v in parts.items() if m != slow]
        return slow in parts and bool(others) and parts[slow] >= max(others) + 5.0

    after = await wait_for_route(fed.broker_url, NEVER_LAUNCHED, moved, f"{slow} measured slow", timeout=90,
                                 provider="gh")
    faults.set(slow, "")
    lost = candidate(after, slow)
    assert after["candidates"][0]["member_id"] != slow, after["candidates"]
    assert "mostly ready_time" in lost["reason"], lost
    assert all(c["parts"]["image"] == candidate(before, c["member_id"])["parts"]["image"] for c in after["candidates"])
    # Leave no slow canary running into the next test: wait for one that started after the reset.
    reset = time.time()
    def fresh(s: dict[str, Any]) -> bool:
        last = next(m for m in s["members"] if m["id"] == slow)["canary"]
        return last["ok"] and last["at"] - last["time_to_ready"] > reset + 1  # it reached ready after starting post-reset

    await wait_canaries(fed, fresh, f"a canary on {slow} started after the reset", timeout=90)


async def test_a_member_that_cannot_start_servers_is_ejected_before_users_get_there(
    fed: DemoFederation, faults: Faults,
) -> None:
    repo = repo_named(fed, "tables")
    target = (await route(fed.broker_url, repo.spec()))["candidates"][0]["member_id"]
    failed_before = await metric(fed, "fedbroker_launches_total", member=target, outcome="failed")
    faults.set(target, "fail")
    broken_at, broken_wall = time.monotonic(), time.time()

    def ejected(d: dict[str, Any]) -> bool:
        return not candidate(d, target)["routable"]

    try:
        decision = await wait_for_route(fed.broker_url, repo.spec(), ejected, f"{target} ejected", timeout=4 * INTERVAL)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {target}: {await member(fed, target)}") from None
    took = time.monotonic() - broken_at
    seen = [(round(r["at"] - broken_wall, 1), r["outcome"]) for r in (await member(fed, target))["canary_history"]]
    assert took <= 2 * INTERVAL, f"ejected after {took:.1f} s, more than two canary intervals: {seen}"
    reason = candidate(decision, target)["reason"]
    assert reason.startswith("canary failed 2 times in a row: ") and "jupyter-server exited with status 3" in reason
    shown = await member(fed, target)
    assert shown["health"] == "ejected" and shown["last_poll_ok"] is True  # ejected, though its agent and ad are fine
    assert [r["ok"] for r in shown["canary_history"][-2:]] == [False, False]

    events = await launch(fed.broker_url, repo.spec())
    ready = await check_ready(events)
    assert ready["member"] != target and not any(e["phase"] == "waiting" for e in events)
    assert await metric(fed, "fedbroker_launches_total", member=target, outcome="failed") == failed_before
    after = await summary(fed)  # the user launch is in the SLO, overall and at its member; no canary is
    hour = after["slo"][0]
    assert (hour["window"], hour["launches"], hour["ready"]) == ("1h", 1, 1) and hour["p95_time_to_ready"] > 0
    assert next(m for m in after["members"] if m["id"] == ready["member"])["slo"][0]["ready"] == 1

    faults.set(target, "")  # fixed: the next canary (a retry, a second later) re-admits it
    await wait_for_route(fed.broker_url, repo.spec(), lambda d: candidate(d, target)["routable"],
                         f"{target} back", timeout=4 * INTERVAL)
    assert (await member(fed, target))["canary"]["ok"] is True


async def test_a_canary_keeps_to_its_own_slot(fed: DemoFederation, faults: Faults) -> None:
    """Tokyo has 2 slots: one for users, one for canaries. With a user session there it is full for
    users, yet its canaries still run (not skipped for want of room); never two canaries at once."""
    admin = AdminClient(fed.broker_url, fed.admin_token)
    for other in ("berlin", "montreal"):
        admin.member_action(other, "drain")
    try:
        ready = await check_ready(await launch(fed.broker_url, repo_named(fed, "hello").spec()))
        assert ready["member"] == "tokyo"
        decision = await wait_for_route(fed.broker_url, NEVER_LAUNCHED, lambda d: not candidate(d, "tokyo")["routable"],
                                        "tokyo full for users", provider="gh")
        assert candidate(decision, "tokyo")["reason"].startswith("no capacity"), decision
        since = (await member(fed, "tokyo"))["canary"]["at"]
        s = await wait_canaries(fed, lambda s: next(m for m in s["members"] if m["id"] == "tokyo")["canary"]["at"] > since,
                                "a canary on the full tokyo", timeout=3 * INTERVAL)
        tokyo = next(m for m in s["members"] if m["id"] == "tokyo")
        assert tokyo["canary"]["ok"] is True, tokyo["canary"]
        assert tokyo["capacity"]["total"] == 2
    finally:
        for other in ("berlin", "montreal"):
            admin.member_action(other, "undrain")
    assert await metric(fed, "fedbroker_canaries_total", member="tokyo", outcome="skipped") == 0
    assert faults.most_canaries and max(faults.most_canaries.values()) == 1, faults.most_canaries
