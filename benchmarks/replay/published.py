"""The ``mybinder`` preset: traces shaped like mybinder.org's published launch analytics (2018-2019).

The public analytics archive (one row per launch) shows, over a year:

* about 4.5M launches over about 31k repositories;
* the top 0.1% of repositories take about 80% of launches, the top 1% about 89%, the top 10% about
  96.5%; two site-demo repositories alone take about 57%;
* a long tail launched once or a few times;
* hourly launches with a median of about 480, a p99 of about 1,260 and a maximum of about 2,550;
* ``ref`` usually a branch name (``master`` then, ``main`` later), sometimes a tag or a commit.

A trace of N launches is a window of such a year: the yearly counts per repository are
constructed to hit the shares above (not drawn from a law and hoped for), and the window's
launches are drawn from them in proportion, so a repository launched 12 times a year shows up
about once in a month-long window, as the long tail does in a real month. The time of each
launch follows the daily and weekly cycle with per-hour noise (calibrated to the hourly p99) and
a few large classes (calibrated to the maximum). Seeded and deterministic, like the generator.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .generator import DAY, WEEK, dataset_id
from .trace import Launch

# The two site-demo repositories (mybinder.org's front-page examples), about 57% together.
DEMO_REPOS = (("gh", "binder-examples/requirements"), ("gh", "jupyterlab/jupyterlab-demo"))


@dataclass(frozen=True)
class PublishedShape:
    """The yearly population and the window drawn from it; defaults are the published numbers."""

    launches: int = 375_000  # a month of the year below
    year_launches: int = 4_500_000
    year_repos: int = 31_000
    demo_shares: tuple[float, ...] = (0.38, 0.19)
    # (share of repositories, share of launches they take), cumulative, most popular first.
    bands: tuple[tuple[float, float], ...] = ((0.001, 0.80), (0.01, 0.89), (0.10, 0.965))
    once_share: float = 0.45  # of the yearly repositories, launched exactly once
    start: float = 1_767_571_200.0  # a Monday, 00:00 UTC
    daily_amplitude: float = 0.45
    weekend_factor: float = 0.75
    hour_sigma: float = 0.25  # lognormal noise on each hour's rate (the hourly p99)
    classes_per_week: float = 0.5  # large classes: many launches of one new repository within an hour
    class_size: int = 1_900
    class_minutes: float = 30.0
    main_share: float = 0.35  # repositories whose default branch is ``main`` (else ``master``)
    pinned_share: float = 0.05  # launches of a tag or commit rather than the default branch
    gitlab_share: float = 0.03
    dataset_share: float = 0.0  # the published traffic names no datasets
    datasets: int = 8

    @property
    def launches_per_day(self) -> float:
        return self.year_launches / 365.0


def _segment(total: int, size: int, start: float, floor: int) -> list[int]:
    """``size`` counts falling as a power of the rank from ``start`` to an end fitted so they sum to ``total``
    (at least ``floor`` each, never above ``start``): the next band starts where this one ends."""
    if size <= 0:
        return []
    def counts(end: float) -> list[int]:
        a = math.log(start / end) / math.log(size) if size > 1 else 0.0
        return [max(floor, int(start * (i + 1) ** -a)) for i in range(size)]
    low, high = float(floor), start
    for _ in range(60):  # the sum grows with the end value
        mid = (low + high) / 2
        low, high = (mid, high) if sum(counts(mid)) < total else (low, mid)
    return counts(low)


def year_counts(shape: PublishedShape, rng: random.Random) -> list[int]:
    """Launches per repository over the year, most popular first (the demos first)."""
    n, total = shape.year_repos, shape.year_launches
    counts = [round(total * s) for s in shape.demo_shares]
    taken_repos, taken_share = len(counts), sum(shape.demo_shares)
    # The first non-demo repository: a few times its band's mean, well below the demos.
    start = 3 * shape.year_launches * (shape.bands[0][1] - taken_share) / max(1, round(shape.bands[0][0] * n) - taken_repos)
    for repo_share, launch_share in shape.bands:
        size = max(1, round(repo_share * n) - taken_repos)
        band = _segment(round(total * (launch_share - taken_share)), size, start, 2)
        counts += band
        taken_repos, taken_share, start = taken_repos + size, launch_share, band[-1]
    n_once = round(n * shape.once_share)
    rest = _segment(total - sum(counts) - n_once, n - taken_repos - n_once, start, 2)
    return counts + rest + [1] * n_once


def _names(n: int, shape: PublishedShape, rng: random.Random) -> list[tuple[str, str, str]]:
    """(provider, spec, default branch) per repository."""
    names = [(p, s, "master") for p, s in DEMO_REPOS]
    for i in range(len(names), n):
        branch = "main" if rng.random() < shape.main_share else "master"
        if rng.random() < shape.gitlab_share:
            names.append(("gl", f"group{i}%2Fproject{i}", branch))
        else:
            names.append(("gh", f"user{i}/project{i}", branch))
    return names


def _hour_rates(shape: PublishedShape, hours: int, rng: random.Random) -> list[float]:
    rates = []
    for h in range(hours):
        t = shape.start + h * 3600.0
        daily = 1.0 + shape.daily_amplitude * math.sin(2 * math.pi * ((t % DAY) / 3600.0 - 9.0) / 24.0)
        weekday = int(((t - shape.start) % WEEK) // DAY)
        noise = rng.lognormvariate(-shape.hour_sigma ** 2 / 2, shape.hour_sigma)
        rates.append(daily * (shape.weekend_factor if weekday >= 5 else 1.0) * noise)
    return rates


def _classes(shape: PublishedShape, duration: float, rng: random.Random) -> list[Launch]:
    launches = []
    for c in range(round(shape.classes_per_week * duration / WEEK)):
        begin = shape.start + rng.randrange(max(1, int(duration // DAY))) * DAY + rng.uniform(8, 16) * 3600.0
        for _ in range(shape.class_size):
            t = float(int(begin + rng.random() * shape.class_minutes * 60.0))
            launches.append(Launch(t, "gh", f"class-org/lecture-{c}", "main"))
    return launches


def generate_published(shape: PublishedShape, seed: int) -> list[Launch]:
    """A deterministic window of ``shape.launches`` launches, sorted by time."""
    rng = random.Random(seed)
    duration = shape.launches / shape.launches_per_day * DAY
    bursts = _classes(shape, duration, rng)[: shape.launches // 4]
    base = shape.launches - len(bursts)
    counts = year_counts(shape, rng)
    names = _names(len(counts), shape, rng)
    needs = {i: dataset_id(rng.randrange(shape.datasets)) for i in range(len(counts))
             if rng.random() < shape.dataset_share}
    picks = rng.choices(range(len(counts)), weights=counts, k=base)
    hours = max(1, math.ceil(duration / 3600.0))
    slots = rng.choices(range(hours), weights=_hour_rates(shape, hours, rng), k=base)
    launches = bursts
    for h, i in zip(slots, picks):
        provider, spec, branch = names[i]
        ref = rng.choice(("v1.0", "2f1c0de")) if rng.random() < shape.pinned_share else branch
        t = float(int(shape.start + h * 3600.0 + rng.random() * 3600.0))
        launches.append(Launch(t, provider, spec, ref, (needs[i],) if i in needs else ()))
    launches.sort(key=lambda launch: launch.time)
    return launches


def without_demos(launches: list[Launch]) -> list[Launch]:
    """The trace without the two demo repositories: the long-tail regime."""
    demos = set(DEMO_REPOS)
    return [launch for launch in launches if (launch.provider, launch.spec) not in demos]
