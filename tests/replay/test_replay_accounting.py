"""The replay's accounting on small traces whose every number is checked by hand."""

from __future__ import annotations

import pytest

from benchmarks.replay.accounting import HourlyPeaks, percentile
from benchmarks.replay.federation import MemberSpec
from benchmarks.replay.simulation import Replay, ReplaySettings
from benchmarks.replay.trace import Launch
from fedbroker.routing import rendezvous

T0 = 1_767_600_000.0  # an hour boundary (2026-01-05 08:00 UTC)
REPO = ("gh", "org/repo", "HEAD")
EXACT = ReplaySettings(seed=1, poll_interval=10.0, poll_jitter=0.0, min_hour_load=1)


def member(id: str, capacity: int = 10, weight: float = 1.0, datasets: tuple[str, ...] = ()) -> MemberSpec:
    """A member without randomness: sigma 0 makes every length its median, and nothing fails."""
    return MemberSpec(
        id=id, weight=weight, capacity=capacity, datasets=datasets, session_median=100.0, session_sigma=0.0,
        build_median=50.0, build_sigma=0.0, launch_seconds=8.0, failure_probability=0.0,
    )


def launches(*offsets: float, data: tuple[str, ...] = (), spec: str = "org/repo") -> list[Launch]:
    return [Launch(T0 + dt, "gh", spec, "HEAD", data) for dt in offsets]


def replay(policy: str, members: list[MemberSpec], trace: list[Launch], settings: ReplaySettings = EXACT):
    sim = Replay(tuple(members), policy, settings)
    return sim, sim.run(trace)


@pytest.mark.parametrize("policy", ["rendezvous", "router"])
def test_one_repo_builds_once_under_sticky_policies(policy: str) -> None:
    _, result = replay(policy, [member("a"), member("b")], launches(0, 60, 120))
    assert result.launches == 3
    assert result.builds_per_1000 == pytest.approx(1000 / 3)


def test_time_to_ready_counts_the_build_waited_for() -> None:
    # t=0 builds (50 s) then launches (8 s); t=20 waits for the same build; t=100 finds the image.
    sim, _ = replay("rendezvous", [member("a")], launches(0, 20, 100))
    assert sim.accounting.ready_seconds == [58.0, 38.0, 8.0]
    assert sim.accounting.builds == 1


def test_launches_beyond_capacity_are_refused() -> None:
    sim, result = replay("rendezvous", [member("a", capacity=2)], launches(0, 0, 0, 1))
    assert result.refused == 2
    assert sim.accounting.launches == 4
    assert len(sim.accounting.ready_seconds) == 2


def test_session_end_frees_the_slot() -> None:
    # The session of t=0 ends at 0 + 50 (build) + 8 (launch) + 100 (session) = 158.
    sim, result = replay("rendezvous", [member("a", capacity=1)], launches(0, 100, 200))
    assert result.refused == 1
    assert sim.accounting.builds == 1
    assert sim.members[0].occupied == 1


def test_dataset_locality_share() -> None:
    a, b = member("a"), member("b", datasets=("10.5281/zenodo.42",))
    winner = rendezvous.order("gh:org/repo", {"a": 1.0, "b": 1.0})[0]
    trace = launches(0, 10, 20, 30, data=("doi:10.5281/ZENODO.42",)) + launches(40)
    _, sticky = replay("rendezvous", [a, b], trace)
    _, routed = replay("router", [a, b], trace)
    assert sticky.dataset_local == (1.0 if winner == "b" else 0.0)
    assert routed.dataset_local == 1.0
    assert routed.dataset_local_avail == 1.0
    assert routed.dataset_first_local == 1.0


def test_peak_over_fair_by_hand() -> None:
    peaks = HourlyPeaks(2, start=0.0)
    peaks.raised(0, 3, 3)
    peaks.raised(1, 1, 4)
    peaks.advance(3600.0 * 2 + 5, [2, 2])  # hour 1 had no event: it keeps occupancy (2, 2)
    peaks.raised(1, 6, 8)
    peaks.finish()
    assert [h for h in peaks.hours] == [([3, 1], 4), ([2, 2], 4), ([2, 6], 8)]
    # weights 3:1, fair shares 3/4 and 1/4 of each hour's total peak
    ratios = peaks.over_fair([3.0, 1.0], min_hour_load=5)
    assert ratios == pytest.approx([2 / 6, 6 / 2])


def test_peak_over_fair_from_a_replay() -> None:
    # Rendezvous puts all four sessions of one repo on its winner; weights 3:1.
    members = [member("a", weight=3.0), member("b", weight=1.0)]
    winner = rendezvous.order("gh:org/repo", {"a": 3.0, "b": 1.0})[0]
    _, result = replay("rendezvous", members, launches(0, 1, 2, 3))
    expected = 4 / (3 / 4 * 4) if winner == "a" else 4 / (1 / 4 * 4)
    assert result.peak_over_fair_max == pytest.approx(expected)


def test_percentile_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
