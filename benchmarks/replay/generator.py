"""The synthetic trace generator: mybinder.org-like popularity, daily and weekly cycles, workshops, datasets.

The shape follows what mybinder.org's launch logs show: the top 1% of repos take about 89% of
launches and one demo repo alone about 40%; a third of repos are launched once; traffic follows
the working day and the week; workshops start 200 launches of one repo within minutes. The
counts per repo are built to hit those shares exactly rather than drawn from a Zipf law and
hoped for, so small seeded traces used in tests have them too. Everything comes from one
``random.Random(seed)``, so a seed and a shape always give the same trace.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from .trace import Launch

DAY = 86_400.0
WEEK = 7 * DAY
DEMO_REPO = ("gh", "binder-examples/requirements")
DATASET_PREFIX = "10.5281/zenodo.70000"


def dataset_id(k: int) -> str:
    """The id of generated dataset ``k`` (a Zenodo-like DOI); simulated members store these."""
    return f"{DATASET_PREFIX}{k:02d}"


@dataclass(frozen=True)
class TraceShape:
    """Everything that shapes a generated trace."""

    launches: int = 100_000
    launches_per_day: float = 20_000.0
    start: float = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC, so weekday cycles line up
    repos_per_launch: float = 0.03  # distinct repos per launch
    demo_share: float = 0.40
    top_share: float = 0.89  # launches of the top 1% of repos, demo included
    once_share: float = 0.34  # repos launched exactly once
    zipf_exponent: float = 1.1
    daily_amplitude: float = 0.6  # the night trough is (1 - a) / (1 + a) of the afternoon peak
    weekend_factor: float = 0.55
    workshops_per_week: float = 0.0
    workshop_size: int = 200
    workshop_minutes: float = 5.0
    dataset_share: float = 0.05  # launches that need a dataset stored at one member
    datasets: int = 8
    other_ref_share: float = 0.03  # launches of a pinned ref rather than HEAD (a second image)
    gitlab_share: float = 0.05


PRESETS: dict[str, TraceShape] = {
    "steady": TraceShape(),
    "workshops": TraceShape(workshops_per_week=12.0),
}


def preset(name: str, **overrides: object) -> TraceShape:
    """A named shape, with some fields replaced (e.g. ``launches``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)  # type: ignore[arg-type]


def _zipf_split(total: int, n: int, exponent: float, minimum: int, rng: random.Random) -> list[int]:
    """``total`` launches over ``n`` repos with Zipf-like weights, each getting at least ``minimum``."""
    if n <= 0:
        return []
    spare = max(0, total - minimum * n)
    weights = [1.0 / (i + 1) ** exponent for i in range(n)]
    scale = spare / sum(weights)
    counts = [minimum + int(w * scale) for w in weights]
    # Truncation leaves fewer than n launches over; give them to random repos, one each.
    for i in rng.sample(range(n), max(0, total - sum(counts))):
        counts[i] += 1
    return counts


def repo_counts(shape: TraceShape, base: int, rng: random.Random) -> list[int]:
    """Launches per repo, most popular first: demo, the rest of the top 1%, the tail, the once-launched."""
    n_repos = max(200, round(base * shape.repos_per_launch))
    n_top = max(2, math.ceil(n_repos / 100))
    n_once = round(n_repos * shape.once_share)
    n_tail = n_repos - n_top - n_once
    demo = round(base * shape.demo_share)
    top_rest = round(base * shape.top_share) - demo
    tail_total = base - demo - top_rest - n_once
    if tail_total < 2 * n_tail:
        raise ValueError("too few launches for this many repos; lower repos_per_launch")
    top = _zipf_split(top_rest, n_top - 1, shape.zipf_exponent, 2, rng)
    tail = _zipf_split(tail_total, n_tail, shape.zipf_exponent, 2, rng)
    # The tail must stay below the top 1%, or "top 1%" would no longer name the same repos.
    cap = min(top) if top else demo
    overflow = sum(max(0, c - cap) for c in tail)
    tail = [min(c, cap) for c in tail]
    top[-1] += overflow
    return [demo, *sorted(top, reverse=True), *tail, *[1] * n_once]


def _hour_weights(shape: TraceShape, hours: int) -> list[float]:
    weights = []
    for h in range(hours):
        t = shape.start + h * 3600.0
        hour_of_day = (t % DAY) / 3600.0
        daily = 1.0 + shape.daily_amplitude * math.sin(2 * math.pi * (hour_of_day - 9.0) / 24.0)
        weekday = int(((t - shape.start) % WEEK) // DAY)
        weights.append(daily * (shape.weekend_factor if weekday >= 5 else 1.0))
    return weights


def _times(shape: TraceShape, n: int, duration: float, rng: random.Random) -> list[float]:
    """``n`` launch instants over ``duration`` seconds following the daily and weekly cycle."""
    hours = max(1, math.ceil(duration / 3600.0))
    chosen = rng.choices(range(hours), weights=_hour_weights(shape, hours), k=n)
    return sorted(float(int(shape.start + h * 3600.0 + rng.random() * 3600.0)) for h in chosen)


def _repo_names(n: int, shape: TraceShape, rng: random.Random) -> list[tuple[str, str]]:
    names = [DEMO_REPO]
    for i in range(1, n):
        if rng.random() < shape.gitlab_share:
            names.append(("gl", f"group{i}%2Fproject{i}"))
        else:
            names.append(("gh", f"user{i}/project{i}"))
    return names


def _dataset_repos(counts: list[int], shape: TraceShape, base: int, rng: random.Random) -> dict[int, str]:
    """Which repos need a dataset (always the same one): a random set summing to the dataset share."""
    wanted, chosen, total = round(base * shape.dataset_share), {}, 0
    for i in rng.sample(range(1, len(counts)), len(counts) - 1):
        if total >= wanted:
            break
        if total + counts[i] <= wanted * 1.05:
            chosen[i] = dataset_id(rng.randrange(shape.datasets))
            total += counts[i]
    return chosen


def _workshops(shape: TraceShape, duration: float, rng: random.Random) -> list[Launch]:
    """Bursts: each workshop launches one new repo ``workshop_size`` times within a few minutes."""
    n = round(shape.workshops_per_week * duration / WEEK)
    launches = []
    for w in range(n):
        day = rng.randrange(max(1, int(duration // DAY)))
        while int(day % 7) >= 5 and duration >= WEEK:  # workshops happen on working days
            day = rng.randrange(max(1, int(duration // DAY)))
        begin = shape.start + day * DAY + rng.uniform(8, 16) * 3600.0
        spec = f"workshop-org/course-{w}"
        for _ in range(shape.workshop_size):
            t = float(int(begin + rng.random() * shape.workshop_minutes * 60.0))
            launches.append(Launch(t, "gh", spec, "HEAD"))
    return launches


def generate(shape: TraceShape, seed: int) -> list[Launch]:
    """A deterministic trace of ``shape.launches`` launches, sorted by time."""
    rng = random.Random(seed)
    duration = shape.launches / shape.launches_per_day * DAY
    bursts = _workshops(shape, duration, rng)[: shape.launches // 2]
    base = shape.launches - len(bursts)
    counts = repo_counts(shape, base, rng)
    names = _repo_names(len(counts), shape, rng)
    needs = _dataset_repos(counts, shape, base, rng)
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    rng.shuffle(order)
    launches = bursts
    for t, i in zip(_times(shape, len(order), duration, rng), order):
        provider, spec = names[i]
        ref = "v2" if rng.random() < shape.other_ref_share else "HEAD"
        data = (needs[i],) if i in needs else ()
        launches.append(Launch(t, provider, spec, ref, data))
    launches.sort(key=lambda launch: launch.time)
    return launches
