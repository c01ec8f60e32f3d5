"""Canary decisions with a fake clock (no sleeps): the jittered schedule, history and ejection, the slot."""

from __future__ import annotations

import random

import pytest

from fedproto.canary import CanaryResult
from fedproto.clock import FakeClock
from fedproto.status import Capacity, StatusAd

from fedbroker.routing.canary import HISTORY, CanaryHealth, CanarySchedule, canary_applies


def result(clock: FakeClock, ok: bool, launch: float | None = 2.0, build: float | None = 1.0) -> CanaryResult:
    if not ok:
        return CanaryResult(ok=False, at=clock.now(), outcome="launch_failed", reason="server did not start")
    return CanaryResult(ok=True, at=clock.now(), outcome="ok", time_to_ready=(build or 0) + (launch or 0),
                        build_seconds=build, launch_seconds=launch)


def status_ad(issued_at: float, total: int = 4, used: int = 0) -> StatusAd:
    return StatusAd(member_id="m1", instance_id="i", generation=1, issued_at=issued_at, expires_at=issued_at + 60,
                    healthy=True, capacity=Capacity(total=total, used=used), backend="test")


def schedule(clock: FakeClock, seed: int = 3) -> CanarySchedule:
    return CanarySchedule(interval=60, retry_interval=10, jitter=0.2, clock=clock, rng=random.Random(seed))


def test_new_members_are_spread_within_jitter_of_the_interval() -> None:
    clock = FakeClock()
    s = schedule(clock)
    s.sync(["a", "b", "c"])
    first = s.next_due_at()
    assert first is not None and clock.now() <= first <= clock.now() + 60 * 0.2
    clock.advance(60 * 0.2)
    assert s.due() == ["a", "b", "c"]


def test_passing_canary_waits_the_jittered_interval_and_failing_one_the_retry() -> None:
    clock = FakeClock()
    s = schedule(clock)
    s.sync(["a"])
    clock.advance(12)
    assert s.due() == ["a"]
    s.start("a")
    assert s.due() == [] and s.next_due_at() is None  # one canary per member at a time
    s.finish("a", ok=True)
    gap = s.next_due_at() - clock.now()  # type: ignore[operator]
    assert 48 <= gap <= 72
    clock.advance(gap)
    s.start("a")
    s.finish("a", ok=False)
    gap = s.next_due_at() - clock.now()  # type: ignore[operator]
    assert 8 <= gap <= 12
    clock.advance(gap)
    s.start("a")
    s.finish("a", ok=None)  # skipped (member full): retried soon, like a failure
    assert 8 <= s.next_due_at() - clock.now() <= 12  # type: ignore[operator]


def test_the_interval_runs_from_start_to_start() -> None:
    clock = FakeClock()
    s = schedule(clock)
    s.sync(["a"])
    clock.advance(12)
    s.start("a")
    clock.advance(20)  # a slow launch
    s.finish("a", ok=True)
    gap = s.next_due_at() - clock.now()  # type: ignore[operator]
    assert 28 <= gap <= 52  # 60 s +-20 % after it started, not after it ended
    s.start("a")
    clock.advance(100)  # longer than the interval: the next one is due at once
    s.finish("a", ok=True)
    assert s.due() == ["a"]


def test_jitter_differs_between_members() -> None:
    clock = FakeClock()
    s = schedule(clock)
    s.sync([f"m{i}" for i in range(20)])
    clock.advance(20)
    for m in s.due():
        s.start(m)
        s.finish(m, ok=True)
    nexts = {round(at, 3) for at in s._next.values()}
    assert len(nexts) == 20


def test_members_leaving_are_forgotten_even_mid_canary() -> None:
    clock = FakeClock()
    s = schedule(clock)
    s.sync(["a", "b"])
    clock.advance(20)
    s.start("a")
    s.sync(["b"])
    s.finish("a", ok=True)
    assert s.due() == ["b"]


@pytest.mark.parametrize(("steps", "ejected"), [
    pytest.param("F", [False], id="one-failure-is-not-enough"),
    pytest.param("FF", [False, True], id="two-in-a-row-eject"),
    pytest.param("FPF", [False, False, False], id="a-pass-resets-the-streak"),
    pytest.param("FFP", [False, True, False], id="a-pass-re-admits"),
    pytest.param("FFFF", [False, True, True, True], id="stays-ejected-while-failing"),
])
def test_consecutive_failures_eject_and_a_pass_re_admits(steps: str, ejected: list[bool]) -> None:
    clock = FakeClock()
    h = CanaryHealth(alpha=0.5)
    seen = []
    for step in steps:
        clock.advance(10)
        h.record(result(clock, step == "P"), eject_after=2)
        seen.append(h.view(None).ejected)
    assert seen == ejected
    assert h.view(None).failures == len(steps) - (steps.rfind("P") + 1)  # failures since the last pass


def test_history_keeps_the_last_24_oldest_first() -> None:
    clock = FakeClock()
    h = CanaryHealth(alpha=0.5)
    for i in range(HISTORY + 6):
        clock.advance(1)
        h.record(result(clock, i % 3 != 0), eject_after=2)
    history = h.view(None).history
    assert len(history) == HISTORY
    assert [r.at for r in history] == sorted(r.at for r in history)
    assert history[-1].at == clock.now()


def test_time_to_ready_is_smoothed_launch_part_and_failures_leave_it() -> None:
    clock = FakeClock()
    h = CanaryHealth(alpha=0.5)
    h.record(result(clock, True, launch=2.0, build=30.0), eject_after=2)
    assert h.view(None).ready_seconds == 2.0  # the launch part: builds are priced by the image part
    h.record(result(clock, True, launch=4.0), eject_after=2)
    assert h.view(None).ready_seconds == 3.0
    h.record(result(clock, False), eject_after=2)
    assert h.view(None).ready_seconds == 3.0
    assert h.view(None).build_seconds == pytest.approx(15.5)


def test_slot_counts_only_in_ads_issued_while_the_canary_ran() -> None:
    clock = FakeClock()
    h = CanaryHealth(alpha=0.5)
    h.reserve(True)
    before = status_ad(clock.now())
    clock.advance(1)
    h.started(clock.now())
    assert not h.view(before).busy  # issued before the canary started: does not count it
    clock.advance(1)
    during = status_ad(clock.now(), used=1)
    assert h.view(during).busy
    clock.advance(1)
    h.stopped(clock.now())
    assert h.view(during).busy  # that ad still counts its server
    clock.advance(1)
    assert not h.view(status_ad(clock.now())).busy
    h.reserve(False)
    assert not h.view(during).busy  # no reservation, nothing to take back


@pytest.mark.parametrize(("wanted", "total", "applies"), [
    pytest.param(True, 4, True, id="on"),
    pytest.param(False, 4, False, id="turned-off-by-admin"),
    pytest.param(True, 1, False, id="one-slot-is-for-users"),
    pytest.param(True, None, False, id="no-ad-yet"),
])
def test_canary_applies(wanted: bool, total: int | None, applies: bool) -> None:
    ad = status_ad(0.0, total=total) if total is not None else None
    assert canary_applies(wanted, ad) is applies
