"""The federation SLO: ready share and time-to-ready percentiles over 1 h and 24 h, with a fake clock."""

from __future__ import annotations

import pytest

from fedproto.clock import FakeClock

from fedbroker.routing.slo import OVERALL, SloTracker, percentile


@pytest.mark.parametrize(("values", "q", "expected"), [
    pytest.param([], 50, None, id="empty"),
    pytest.param([3.0], 95, 3.0, id="one"),
    pytest.param([float(i) for i in range(1, 101)], 50, 50.0, id="median-of-100"),
    pytest.param([float(i) for i in range(1, 101)], 95, 95.0, id="p95-of-100"),
    pytest.param([1.0, 2.0, 10.0], 50, 2.0, id="nearest-rank"),
    pytest.param([1.0, 2.0, 10.0], 95, 10.0, id="p95-of-few-is-the-max"),
])
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_windows_count_ready_share_and_percentiles() -> None:
    clock = FakeClock()
    slo = SloTracker(clock)
    for seconds in (1.0, 2.0, 3.0, 4.0):
        slo.record("a", True, seconds)
    slo.record("a", False)
    hour, day = slo.windows("a")
    assert (hour.window, hour.launches, hour.ready, hour.ready_share) == ("1h", 5, 4, 0.8)
    assert (hour.p50_time_to_ready, hour.p95_time_to_ready) == (2.0, 4.0)
    assert day.model_dump() == {**hour.model_dump(), "window": "24h"}


def test_old_launches_leave_the_hour_then_the_day() -> None:
    clock = FakeClock()
    slo = SloTracker(clock)
    slo.record("a", False)
    clock.advance(3601)
    slo.record("a", True, 5.0)
    hour, day = slo.windows("a")
    assert (hour.launches, hour.ready_share) == (1, 1.0)
    assert (day.launches, day.ready_share) == (2, 0.5)
    clock.advance(86400 - 3600)
    slo.record("a", True, 7.0)  # recording also drops what is older than a day
    hour, day = slo.windows("a")
    assert (hour.launches, day.launches, day.p50_time_to_ready) == (1, 2, 5.0)


def test_keys_are_separate_and_unknown_ones_are_empty() -> None:
    clock = FakeClock()
    slo = SloTracker(clock)
    slo.record("a", True, 1.0)
    slo.record(OVERALL, True, 1.5)
    assert slo.windows("b")[0].model_dump() == {"window": "1h", "launches": 0, "ready": 0, "ready_share": None,
                                               "p50_time_to_ready": None, "p95_time_to_ready": None}
    assert slo.windows(OVERALL)[0].p50_time_to_ready == 1.5
    slo.forget(["a"])
    assert slo.keys() == [OVERALL]
