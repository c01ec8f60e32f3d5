"""Benchmark: one routing decision (health views + ``rank``) at 10, 100, 1,000 and 10,000 members.

Run: .venv/bin/python benchmarks/bench_routing.py [--sizes 10,100,1000,10000] [--decisions 2000]
Prints one machine-readable summary line: p50/p90/p99 in microseconds per size (wall clock, and
p99 of the deciding thread's CPU time), and p99 as a share of its target (p99 < 1 ms at 1,000 members, < 10 ms at 10,000; 1.0 means exactly on target).
Requests mix cached and uncached repos, ``?data=`` DOIs and prefixes, and client regions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from fedproto.clock import FakeClock
from fedproto.repospec import RepoSpec

from fedbroker.config import RoutingSettings
from fedbroker.routing.rank import RouteRequest, RoutingMemo, rank

import fleet

TARGET_P99_US = {1_000: 1_000.0, 10_000: 10_000.0}


def requests(n: int, rng: random.Random) -> list[RouteRequest]:
    """A seeded mix of launches: mostly popular repos, some with datasets, some with a region."""
    out = []
    for _ in range(n):
        k = rng.randrange(fleet.POPULAR_REPOS * 2)  # half of them cached somewhere, half never built
        data: tuple[str, ...] = ()
        roll = rng.random()
        if roll < 0.2:
            data = (f"10.5281/zenodo.{rng.randrange(10_000_000)}",)
        elif roll < 0.3:
            data = (f"s3://site-{rng.randrange(10)}/run{rng.randrange(100)}/",)
        region = rng.choice((None, *fleet.REGIONS))
        out.append(RouteRequest(repo=RepoSpec.parse("gh", f"org{k}/repo{k}/HEAD"), data=data, client_region=region))
    return out


def measure(size: int, decisions: int, max_seconds: float, detail: int | None) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this thread's) microseconds per decision, as the dispatcher makes it
    (views, then rank). CPU time leaves out time the OS gave to other processes, which on a
    shared machine is most of the wall-clock tail."""
    clock = FakeClock()
    fl = fleet.build(size, clock)
    settings = RoutingSettings()
    memo = RoutingMemo()  # as the dispatcher keeps one; health does not change during the run
    rank(fl.snapshot, fl.health.views(), requests(1, random.Random(0))[0], settings, decision_id="warm", memo=memo)
    timings, cpu = [], []
    deadline = time.perf_counter() + max_seconds
    for req in requests(decisions, random.Random(size)):
        started, cpu_started = time.perf_counter(), time.thread_time()
        decision = rank(fl.snapshot, fl.health.views(), req, settings, decision_id="bench", memo=memo, detail=detail)
        timings.append((time.perf_counter() - started) * 1e6)
        cpu.append((time.thread_time() - cpu_started) * 1e6)
        assert decision.chosen is not None
        if time.perf_counter() > deadline:
            break
    return timings, cpu


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="Time bound per size.")
    args = parser.parse_args()
    fields = ["bench=routing"]
    for size in (int(s) for s in args.sizes.split(",")):
        # A launch, as the dispatcher decides it (best 10 detailed), then a full dry-run explanation.
        for label, detail in (("", 10), ("explain_", None)):
            t, cpu = measure(size, args.decisions, args.max_seconds, detail)
            p99 = _pct(t, 0.99)
            fields += [f"{label}n{size}_p50_us={statistics.median(t):.0f}", f"{label}n{size}_p99_us={p99:.0f}"]
            if not label:
                fields += [f"n{size}_p90_us={_pct(t, 0.9):.0f}", f"n{size}_cpu_p99_us={_pct(cpu, 0.99):.0f}"]
            if size in TARGET_P99_US and not label:
                fields.append(f"n{size}_p99_of_target={p99 / TARGET_P99_US[size]:.2f}")
                fields.append(f"n{size}_cpu_p99_of_target={_pct(cpu, 0.99) / TARGET_P99_US[size]:.2f}")
    print(" ".join(fields))


if __name__ == "__main__":
    main()
