"""The trace generator: the popularity, cycle, burst and dataset properties it promises, on small seeded traces."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from benchmarks.replay.generator import DEMO_REPO, generate, preset
from benchmarks.replay.trace import Launch


@pytest.fixture(scope="module")
def steady() -> list[Launch]:
    return generate(preset("steady", launches=40_000), seed=7)


@pytest.fixture(scope="module")
def workshops() -> list[Launch]:
    return generate(preset("workshops", launches=140_000), seed=7)


def test_same_seed_same_trace() -> None:
    shape = preset("workshops", launches=3_000)
    assert generate(shape, 3) == generate(shape, 3)
    assert generate(shape, 3) != generate(shape, 4)


def test_sorted_and_sized(steady: list[Launch]) -> None:
    assert len(steady) == 40_000
    assert all(a.time <= b.time for a, b in zip(steady, steady[1:]))


def test_heavy_head_and_once_launched_tail(steady: list[Launch]) -> None:
    counts = Counter((l.provider, l.spec) for l in steady).most_common()
    top = counts[: math.ceil(len(counts) / 100)]
    assert counts[0][0] == DEMO_REPO
    assert counts[0][1] / len(steady) == pytest.approx(0.40, abs=0.01)
    assert sum(c for _, c in top) / len(steady) == pytest.approx(0.89, abs=0.02)
    assert sum(1 for _, c in counts if c == 1) / len(counts) == pytest.approx(1 / 3, abs=0.03)


def test_daily_and_weekly_cycles(steady: list[Launch]) -> None:
    by_hour = Counter(int(l.time // 3600) % 24 for l in steady)
    assert by_hour[15] > 2 * by_hour[3]
    by_day = Counter(int((l.time - steady[0].time) // 86_400) % 7 for l in steady)
    assert by_day[1] > 1.4 * by_day[6]  # a Tuesday against a Sunday


def test_dataset_share(steady: list[Launch]) -> None:
    share = sum(1 for l in steady if l.data) / len(steady)
    assert share == pytest.approx(0.05, abs=0.01)


def test_workshop_burst_of_200_within_5_minutes(workshops: list[Launch]) -> None:
    by_repo: dict[str, list[float]] = {}
    for l in workshops:
        if l.spec.startswith("workshop-org/"):
            by_repo.setdefault(l.spec, []).append(l.time)
    assert by_repo, "the workshops preset has bursts"
    for times in by_repo.values():
        assert len(times) == 200
        assert max(times) - min(times) <= 300
