"""The member health state machine, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import random

import pytest

from fedproto.clock import FakeClock
from fedproto.status import Capacity, StatusAd

from fedbroker.config import HealthSettings
from fedbroker.routing.health import HealthState, HealthTable, MemberHealth

SETTINGS = HealthSettings(
    interval=10, jitter=0.2, unhealthy_interval=30, healthy_after=2, unhealthy_after=2,
    eject_after_failures=3, eject_base=30, eject_max=100,
)


def make(clock: FakeClock, settings: HealthSettings = SETTINGS, seed: int = 1) -> MemberHealth:
    return MemberHealth("m1", settings, clock, random.Random(seed))


def ad(clock: FakeClock, healthy: bool = True, ttl: float = 60, used: int = 0) -> StatusAd:
    now = clock.now()
    return StatusAd(member_id="m1", instance_id="i", generation=1, issued_at=now, expires_at=now + ttl,
                    healthy=healthy, capacity=Capacity(total=10, used=used), backend="test")


# Each step: "ok" (healthy ad), "sick" (ad saying unhealthy), "err" (poll failed); then the expected state.
HYSTERESIS = [
    pytest.param(["ok"], ["healthy"], id="first-pass-decides-at-once"),
    pytest.param(["err"], ["unhealthy"], id="first-failure-decides-at-once"),
    pytest.param(["ok", "err"], ["healthy", "healthy"], id="one-failure-is-not-enough"),
    pytest.param(["ok", "err", "err"], ["healthy", "healthy", "unhealthy"], id="two-failures-flip"),
    pytest.param(["ok", "err", "ok", "err"], ["healthy"] * 4, id="alternating-stays-healthy"),
    pytest.param(["ok", "sick", "sick"], ["healthy", "healthy", "unhealthy"], id="ad-saying-unhealthy-counts"),
    pytest.param(["err", "ok"], ["unhealthy", "healthy"], id="never-answered-first-pass-decides-at-once"),
    pytest.param(["ok", "err", "err", "ok"], ["healthy", "healthy", "unhealthy", "unhealthy"], id="one-pass-is-not-enough"),
    pytest.param(["ok", "err", "err", "ok", "ok"], ["healthy", "healthy", "unhealthy", "unhealthy", "healthy"],
                 id="two-passes-recover"),
]


@pytest.mark.parametrize(("steps", "states"), HYSTERESIS)
def test_hysteresis(steps: list[str], states: list[str]) -> None:
    clock = FakeClock()
    h = make(clock)
    seen = []
    for step in steps:
        clock.advance(10)
        h.record_poll(ad(clock, healthy=step != "sick") if step != "err" else None, "refused" if step == "err" else None)
        seen.append(h.state.value)
    assert seen == states


def test_new_member_is_due_at_once_and_polled_on_jittered_interval() -> None:
    clock = FakeClock()
    h = make(clock)
    assert h.due()
    h.record_poll(ad(clock))
    assert 8.0 <= h.next_poll_at - clock.now() <= 12.0
    clock.advance(7.9)
    assert not h.due()
    clock.advance(4.2)
    assert h.due()


def test_unhealthy_members_are_polled_slower() -> None:
    clock = FakeClock()
    h = make(clock)
    h.record_poll(ad(clock))
    for _ in range(2):
        h.record_poll(None, "refused")
    assert h.state is HealthState.unhealthy
    assert 24.0 <= h.next_poll_at - clock.now() <= 36.0


def test_member_that_never_answered_is_retried_on_a_short_back_off() -> None:
    """A just-enrolled member whose agent is still starting must not wait the slow interval."""
    clock = FakeClock()
    h = make(clock)
    gaps = []
    for _ in range(7):
        h.record_poll(None, "refused")
        gaps.append(round(h.next_poll_at - clock.now(), 3))
        clock.advance(gaps[-1])
    expected = [1, 2, 4, 8, 16, 30, 30]  # doubling, capped by the unhealthy interval; then jittered ±20%
    assert all(0.8 * e <= g <= 1.2 * e for g, e in zip(gaps, expected, strict=True)), gaps


def test_jitter_differs_between_polls() -> None:
    clock = FakeClock()
    h = make(clock, seed=7)
    gaps = set()
    for _ in range(5):
        h.record_poll(ad(clock))
        gaps.add(round(h.next_poll_at - clock.now(), 6))
    assert len(gaps) == 5


@pytest.mark.parametrize(("advance", "expired"), [(59, False), (60, True), (3600, True)],
                         ids=["fresh", "at-expiry", "long-gone"])
def test_ad_expiry(advance: float, expired: bool) -> None:
    clock = FakeClock()
    h = make(clock)
    assert h.view().ad_expired  # no ad yet counts as no usable ad
    h.record_poll(ad(clock, ttl=60))
    clock.advance(advance)
    assert h.view().ad_expired is expired


def test_ejection_backoff_grows_and_is_capped() -> None:
    clock = FakeClock()
    h = make(clock)
    h.record_poll(ad(clock))
    holds = []
    for _ in range(4):
        for _ in range(3):
            h.record_launch_failure()
        assert h.ejected
        assert h.ejected_until is not None
        holds.append(h.ejected_until - clock.now())
        clock.advance(holds[-1])
        h.record_poll(ad(clock))  # passing poll after the back-off re-admits
        assert not h.ejected
    assert holds == [30, 60, 100, 100]


@pytest.mark.parametrize(
    ("failures", "ejected"), [(1, False), (2, False), (3, True)], ids=["one", "two", "three-ejects"]
)
def test_eject_after_consecutive_failures(failures: int, ejected: bool) -> None:
    clock = FakeClock()
    h = make(clock)
    for _ in range(failures):
        h.record_launch_failure()
    assert h.ejected is ejected


def test_success_between_failures_resets_the_streak() -> None:
    clock = FakeClock()
    h = make(clock)
    for outcome in ["fail", "fail", "ok", "fail", "fail"]:
        h.record_launch_failure() if outcome == "fail" else h.record_launch_success(5.0)
    assert not h.ejected


@pytest.mark.parametrize(
    ("advance", "poll", "ejected"),
    [(29, "ok", True), (30, "err", True), (30, "sick", True), (30, "ok", False)],
    ids=["too-early", "failed-poll-keeps-out", "sick-ad-keeps-out", "readmit-after-backoff"],
)
def test_readmission_needs_backoff_and_a_passing_poll(advance: float, poll: str, ejected: bool) -> None:
    clock = FakeClock()
    h = make(clock)
    h.record_poll(ad(clock))
    for _ in range(3):
        h.record_launch_failure()
    clock.advance(advance)
    h.record_poll(None if poll == "err" else ad(clock, healthy=poll == "ok"), "refused" if poll == "err" else None)
    assert h.ejected is ejected


def test_success_rate_and_time_to_ready_are_smoothed() -> None:
    clock = FakeClock()
    h = make(clock, HealthSettings(ewma_alpha=0.5))
    assert h.success_rate == 1.0 and h.ready_seconds is None
    h.record_launch_success(10.0)
    h.record_launch_success(20.0)
    assert h.ready_seconds == 15.0
    h.record_launch_failure()
    assert h.success_rate == 0.5


def test_load_counts_launches_until_the_next_ad() -> None:
    clock = FakeClock()
    h = make(clock)
    h.record_poll(ad(clock, used=4))
    h.record_launch_started()
    h.record_launch_started()
    assert h.view().load == pytest.approx(0.6)
    assert h.view().free == 4
    clock.advance(1)
    h.record_poll(ad(clock, used=6))
    assert h.view().load == pytest.approx(0.6) and h.view().recent_launches == 0



def test_a_launch_that_ends_without_a_server_stops_counting_before_the_next_ad() -> None:
    # A failed, refused or abandoned launch is no load: without this, a burst of failovers
    # left both members "full" until their next ads and refused the next user outright.
    clock = FakeClock()
    h = make(clock)
    h.record_poll(ad(clock, used=4))
    h.record_launch_started()
    h.record_launch_started()
    h.release_launch()
    assert h.view().recent_launches == 1 and h.view().free == 5
    h.release_launch()
    h.release_launch()  # after an ad already counted it: never below zero
    assert h.view().recent_launches == 0 and h.view().free == 6


def test_table_follows_member_set() -> None:
    clock = FakeClock()
    table = HealthTable(SETTINGS, clock, random.Random(0))
    table.sync(["a", "b"])
    table.member("a").record_poll(None, "x")
    table.sync(["a", "c"])
    assert table.ids() == ["a", "c"]
    assert table.views()["a"].state is HealthState.unhealthy
    assert table.due() == ["c"]


def test_views_stay_frozen_while_one_member_is_read_without_a_copy() -> None:
    """``views()`` hands out a mapping that never changes under its holder (the same one until
    something changes); ``view()`` and the watchers see a launch or an expiry at once."""
    clock = FakeClock()
    table = HealthTable(SETTINGS, clock, random.Random(0))
    table.sync(["a", "b"])
    table.member("a").record_poll(ad(clock, ttl=5))
    watch = table.watch()
    frozen = table.views()
    watch.clear()
    assert table.views() is frozen  # nothing changed: the very same mapping
    table.member("a").record_launch_started()
    assert table.view("a").recent_launches == 1  # type: ignore[union-attr]
    assert watch == {"a"}
    assert frozen["a"].recent_launches == 0  # the earlier mapping did not change under its holder
    assert table.views() is not frozen and table.views()["a"].recent_launches == 1
    watch.clear()
    clock.advance(6)  # the ad expires by time alone
    assert table.view("a").ad_expired and watch == {"a"}  # type: ignore[union-attr]
    assert table.view("nobody") is None
