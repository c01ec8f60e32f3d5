"""The command line: ``generate`` writes a synthetic trace, ``run`` replays one under each policy.

    python -m benchmarks.replay generate --preset workshops --launches 1000000 --seed 1 -o trace.csv
    python -m benchmarks.replay run trace.csv
    python -m benchmarks.replay run --preset steady --launches 200000      # generated in memory
    python -m benchmarks.replay run --preset mybinder --without-demos      # mybinder.org's long tail

``run`` prints one ``key=value`` line per policy on stdout (timings go to stderr) and runs the
policies in parallel processes (``--jobs``), each replaying the same trace from scratch.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fedbroker.config import RoutingSettings

from .accounting import Result
from .federation import MemberSpec, load_federation, mybinder
from .generator import PRESETS, generate, preset
from .published import PublishedShape, generate_published, without_demos
from .policies import EXTRA_POLICIES, POLICY_NAMES
from .simulation import Replay, ReplaySettings
from .trace import Launch, TraceError, read_trace, write_trace


@dataclass(frozen=True)
class TraceSource:
    """Where a run's launches come from: a CSV file, or a preset generated in each worker."""

    path: Path | None = None
    preset: str = "steady"
    launches: int = 100_000
    seed: int = 1
    demos: bool = True  # False: leave out the two site-demo repositories (the long-tail regime)

    @property
    def name(self) -> str:
        name = self.path.stem if self.path else f"{self.preset}-{self.launches}-s{self.seed}"
        return name if self.demos else f"{name}-nodemos"

    def load(self) -> list[Launch]:
        launches = self._load()
        return launches if self.demos else without_demos(launches)

    def _load(self) -> list[Launch]:
        if self.path is not None:
            return read_trace(self.path)
        if self.preset == PUBLISHED:
            return generate_published(PublishedShape(launches=self.launches), self.seed)
        return generate(preset(self.preset, launches=self.launches), self.seed)


# The preset shaped like mybinder.org's published analytics (``published.py``), next to the generator's.
PUBLISHED = "mybinder"
PRESET_NAMES = sorted([*PRESETS, PUBLISHED])


@dataclass(frozen=True)
class Job:
    """One policy's replay, as sent to a worker process."""

    source: TraceSource
    federation: tuple[MemberSpec, ...]
    policy: str
    settings: ReplaySettings
    routing: RoutingSettings


def run_job(job: Job) -> tuple[Result, float]:
    """Replay one policy; returns its result and the seconds spent loading the trace."""
    began = time.perf_counter()
    launches = job.source.load()
    # The trace is millions of long-lived objects; frozen, the cyclic GC stops re-scanning them
    # on every full collection (that made a 1M-launch replay ~4x slower than 100k, per launch).
    gc.collect()
    gc.freeze()
    loaded = time.perf_counter() - began
    return Replay(job.federation, job.policy, job.settings, job.routing).run(launches), loaded


def _routing(overrides: Sequence[str]) -> RoutingSettings:
    values: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--routing expects key=value, got {item!r}")
        values[key.strip()] = value.strip()
    return RoutingSettings.model_validate(values)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a synthetic launch trace as CSV")
    run = sub.add_parser("run", help="replay a trace under each policy and print one line per policy")
    for p in (gen, run):
        p.add_argument("--preset", choices=PRESET_NAMES, default="steady")
        p.add_argument("--without-demos", action="store_true",
                       help="leave out the two site-demo repositories (mybinder.org's long-tail regime)")
        p.add_argument("--launches", type=int, default=100_000)
        p.add_argument("--seed", type=int, default=1)
    gen.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    run.add_argument("trace", nargs="?", type=Path, help="CSV trace; without it, --preset is generated in memory")
    run.add_argument("--members", type=Path, help="federation as JSON (default: the built-in mybinder-like one)")
    run.add_argument("--policies", default=",".join(POLICY_NAMES), help="comma-separated, from: " + ", ".join(POLICY_NAMES + EXTRA_POLICIES))
    run.add_argument("--jobs", type=int, default=min(3, multiprocessing.cpu_count()), help="parallel processes")
    run.add_argument("--poll-interval", type=float, default=ReplaySettings.poll_interval)
    run.add_argument("--max-attempts", type=int, default=ReplaySettings.max_attempts)
    run.add_argument("--min-hour-load", type=int, default=ReplaySettings.min_hour_load)
    run.add_argument("--routing", action="append", default=[], metavar="KEY=VALUE", help="override a RoutingSettings field")
    return parser


def _generate(args: argparse.Namespace) -> int:
    launches = TraceSource(None, args.preset, args.launches, args.seed, not args.without_demos).load()
    if args.output is None:
        write_trace(launches, sys.stdout)
    else:
        with open(args.output, "w", newline="", encoding="utf-8") as stream:
            rows = write_trace(launches, stream)
        print(f"wrote {rows} rows ({len(launches)} launches) to {args.output}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    source = TraceSource(args.trace, args.preset, args.launches, args.seed, not args.without_demos)
    federation = load_federation(args.members) if args.members else mybinder()
    settings = ReplaySettings(args.seed, args.poll_interval, max_attempts=args.max_attempts, min_hour_load=args.min_hour_load)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(policies) - set(POLICY_NAMES) - set(EXTRA_POLICIES))
    if unknown:
        raise SystemExit(f"unknown policies {', '.join(unknown)}; choose from {', '.join(POLICY_NAMES + EXTRA_POLICIES)}")
    jobs = [Job(source, federation, p, settings, _routing(args.routing)) for p in policies]
    began = time.perf_counter()
    if args.jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            outcomes = list(pool.map(run_job, jobs))
    else:
        outcomes = [run_job(job) for job in jobs]
    for result, loaded in outcomes:
        print(result.line(source.name), flush=True)
        print(f"# {result.policy}: trace loaded in {loaded:.1f} s, replayed in {result.seconds:.1f} s "
              f"({result.cpu_seconds:.1f} s CPU)", file=sys.stderr)
    print(f"# wall time {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _generate(args) if args.command == "generate" else _run(args)
    except (TraceError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
