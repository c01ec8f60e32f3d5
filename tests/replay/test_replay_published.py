"""The ``mybinder`` preset keeps the published shape it promises (BENCHMARKS.md and published.py)."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from benchmarks.replay.cli import main
from benchmarks.replay.published import DEMO_REPOS, PublishedShape, generate_published, without_demos, year_counts


def test_the_yearly_population_has_the_published_shares() -> None:
    shape = PublishedShape()
    counts = year_counts(shape, random.Random(1))
    total = sum(counts)
    assert len(counts) == 31_000 and total == pytest.approx(4_500_000, rel=0.001)
    assert counts == sorted(counts, reverse=True)
    for repos, share in ((31, 0.80), (310, 0.89), (3_100, 0.965)):
        assert sum(counts[:repos]) / total == pytest.approx(share, abs=0.005)
    assert sum(counts[:2]) / total == pytest.approx(0.57, abs=0.005)
    assert sum(1 for c in counts if c == 1) / len(counts) == pytest.approx(0.45, abs=0.01)


def test_a_window_has_the_published_hourly_rate_and_branch_refs() -> None:
    launches = generate_published(PublishedShape(launches=120_000), seed=3)
    assert len(launches) == 120_000 and launches == sorted(launches, key=lambda l: l.time)
    hourly = sorted(Counter(int(l.time // 3600) for l in launches).values())
    assert 400 < statistics.median(hourly) < 560
    assert 1_000 < hourly[int(0.99 * len(hourly))] < 1_600
    refs = Counter(l.ref for l in launches)
    assert (refs["master"] + refs["main"]) / len(launches) > 0.9
    demos = sum(1 for l in launches if (l.provider, l.spec) in DEMO_REPOS) / len(launches)
    assert demos == pytest.approx(0.57, abs=0.03)
    assert not any((l.provider, l.spec) in DEMO_REPOS for l in without_demos(launches))


def test_cli_runs_the_preset_without_demos(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preset", "mybinder", "--launches", "3000", "--without-demos", "--jobs", "1",
                 "--policies", "rendezvous,bounded", "--min-hour-load", "1"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("trace=")]
    assert [l.split()[0] for l in lines] == ["trace=mybinder-3000-s1-nodemos"] * 2
    assert int(dict(kv.split("=") for kv in lines[0].split())["launches"]) < 3000 * 0.6
