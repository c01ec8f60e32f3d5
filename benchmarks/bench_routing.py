"""Benchmark: one routing decision, as the dispatcher makes it, at 1,000 and 10,000 members, with health churn.

Run: .venv/bin/python benchmarks/bench_routing.py [--sizes 1000,10000] [--decisions 3000] [--rate 1000]

What each decision costs on a live broker: the routing index brought up to date (the members
whose health changed since the last decision), then the decision, then its provisional load
(which changes the chosen member's health again). Between decisions, poll results arrive at the
real rate (every member once per ``--interval`` seconds, at ``--rate`` decisions per second: 1
poll per 10 decisions at 1,000 members, 1 per decision at 10,000), each a fresh ad with new load.
Repositories are distinct: uniform over 100,000 repos, or Zipf (s=1.1) over the same 100,000;
30 % of launches name a dataset, 6/7 carry a client region. Baseline in the same run: the old
path (``rank`` over every member, memo as the dispatcher kept one) on the same requests and
churn, for the first ``--baseline`` decisions. Prints one summary line; ``*_after_poll_*`` is
the decision right after a poll result; ``p99_of_target`` is p99 over 1 ms (1,000) or 10 ms (10,000).
The process runs with the broker's garbage-collector setting (``fedbroker.serve.tune_gc``, which
``fedbroker serve`` applies): collections land inside decisions and are part of their tail.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from typing import Callable

from fedproto.clock import FakeClock
from fedproto.repospec import RepoSpec

from fedbroker.config import RoutingSettings
from fedbroker.registry.snapshot import SnapshotHolder
from fedbroker.routing.live import LiveRouter
from fedbroker.routing.rank import RouteRequest, RoutingMemo, rank
from fedbroker.serve import tune_gc

import fleet

TARGET_P99_US = {1_000: 1_000.0, 10_000: 10_000.0}
REPOS = 100_000


def zipf_sampler(n: int, s: float, rng: random.Random) -> Callable[[], int]:
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    import bisect

    return lambda: min(n - 1, bisect.bisect_left(cum, rng.random() * total))


def requests(n: int, rng: random.Random, dist: str) -> list[RouteRequest]:
    """Distinct launches: repos uniform or Zipf over 100,000 (the fleet caches the first 20,000 somewhere)."""
    pick = zipf_sampler(REPOS, 1.1, rng) if dist == "zipf" else (lambda: rng.randrange(REPOS))
    out = []
    for _ in range(n):
        k = pick()
        data: tuple[str, ...] = ()
        roll = rng.random()
        if roll < 0.2:
            data = (f"10.5281/zenodo.{rng.randrange(10_000_000)}",)
        elif roll < 0.3:
            data = (f"s3://site-{rng.randrange(10)}/run{rng.randrange(100)}/",)
        region = rng.choice((None, *fleet.REGIONS))
        out.append(RouteRequest(repo=RepoSpec.parse("gh", f"org{k}/repo{k}/HEAD"), data=data, client_region=region))
    return out


@dataclass
class Timings:
    all: list[float]
    after_poll: list[float]
    cpu: list[float]


def measure(size: int, reqs: list[RouteRequest], polls_per_decision: float, old: bool, max_seconds: float) -> Timings:
    clock = FakeClock()
    fl = fleet.build(size, clock)
    settings = RoutingSettings()
    live = LiveRouter(settings, SnapshotHolder(fl.snapshot), fl.health, clock)
    memo = RoutingMemo()
    ids = sorted(fl.snapshot.members)
    rng = random.Random(size)
    live.decide(reqs[0], "warm", 10)
    out = Timings([], [], [])
    owed, deadline = 0.0, time.perf_counter() + max_seconds
    for req in reqs:
        owed += polls_per_decision
        polled = owed >= 1
        while owed >= 1:
            owed -= 1
            # A poll result: the member's ad issued anew, with new load (a new object, as parsed).
            m = rng.choice(ids)
            ad = fl.ads[m]
            cap = ad.capacity.model_copy(update={"used": rng.randrange(ad.capacity.total // 2)})
            images = ad.images.model_copy(update={"hashes": list(ad.images.hashes)})
            fl.health.member(m).record_poll(ad.model_copy(update={
                "issued_at": clock.now(), "expires_at": clock.now() + 600, "capacity": cap, "images": images}))
        started, cpu_started = time.perf_counter(), time.thread_time()
        if old:
            decision = rank(fl.snapshot, fl.health.views(), req, settings, decision_id="b", memo=memo, detail=10)
        else:
            decision = live.decide(req, "b", 10)
        if decision.chosen is not None:
            if old:
                fl.health.member(decision.chosen).record_launch_started()
            else:
                live.launched(decision.chosen, req)
        elapsed = (time.perf_counter() - started) * 1e6
        out.cpu.append((time.thread_time() - cpu_started) * 1e6)
        out.all.append(elapsed)
        if polled:
            out.after_poll.append(elapsed)
        clock.advance(0.001)
        if time.perf_counter() > deadline:
            break
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    tune_gc()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--baseline", type=int, default=300, help="decisions of the old path per size (it is slow)")
    parser.add_argument("--rate", type=float, default=1000.0, help="decisions per second the churn is scaled to")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls of one member")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time bound per measurement")
    args = parser.parse_args()
    fields = ["bench=routing"]
    for size in (int(s) for s in args.sizes.split(",")):
        polls = size / args.interval / args.rate
        for dist in ("uniform", "zipf"):
            reqs = requests(args.decisions, random.Random(size), dist)
            t = measure(size, reqs, polls, False, args.max_seconds)
            base = measure(size, reqs[: args.baseline], polls, True, args.max_seconds)
            p = f"n{size}_{dist}"
            fields += [f"{p}_p50_us={pct(t.all, 0.5):.0f}", f"{p}_p99_us={pct(t.all, 0.99):.0f}",
                       f"{p}_after_poll_p99_us={pct(t.after_poll, 0.99):.0f}", f"{p}_cpu_p99_us={pct(t.cpu, 0.99):.0f}",
                       f"{p}_old_p50_us={pct(base.all, 0.5):.0f}", f"{p}_old_p99_us={pct(base.all, 0.99):.0f}",
                       f"{p}_speedup_p50={pct(base.all, 0.5) / pct(t.all, 0.5):.1f}"]
            if size in TARGET_P99_US:
                worst = max(pct(t.all, 0.99), pct(t.after_poll, 0.99))
                fields.append(f"{p}_p99_of_target={worst / TARGET_P99_US[size]:.2f}")
    print(" ".join(fields), flush=True)


if __name__ == "__main__":
    main()
