"""Benchmark: two broker replicas on one PostgreSQL share the polling of 10,000 members.

Run: .venv/bin/python benchmarks/bench_replicas.py [--members 10000] [--interval 10] [--window 30]

Needs PostgreSQL's ``initdb`` and ``pg_ctl`` (Debian: apt-get install postgresql); a throwaway
cluster is started in a temporary directory. A member farm serves the members' signed ads and
counts the polls of each member; two real ``fedbroker serve`` processes on the same database
poll them on the usual schedule (``health.interval``, 20 % jitter), splitting the members by
lease and sharing results through the database. Measured over ``--window`` seconds once every
member is routable on both replicas: polls per member (the target: each member once per
interval between the replicas, not once per replica), the polling rate against
members / interval, each replica's CPU share and memory, and whether both replicas still route
to every member at the end.

The farm reuses a member's signed ad for 5 s (``--resign-after``): signing 1,000 ads a second
would take a core of this 2-core machine from the brokers, and the farm is not what is measured.
Prints one machine-readable summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import tomli_w

import benchbroker

# The throwaway PostgreSQL the suite uses (tests/pgserver.py): one rule for starting it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pgserver  # noqa: E402


async def _new_database(port: int) -> str:
    server = pgserver.PostgresServer(port)
    return await server.new_database()


async def _poll_counts(farm_url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{farm_url}/_poll_counts") as resp:
            return dict(await resp.json())


def _replica_b(work: Path, config_a: Path) -> Path:
    """Replica b: replica a's settings and database, a's keys (one broker identity, two processes)."""
    (work / "b").mkdir()
    text = config_a.read_text()
    config_b = work / "b" / "broker.toml"
    # Top-level keys go before the tables ([health]) in TOML.
    config_b.write_text(tomli_w.dumps({"keys_dir": str(config_a.parent / "keys")}) + text)
    return config_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0, help="health.interval: seconds between polls of one member")
    parser.add_argument("--window", type=float, default=30.0, help="Measured seconds, once every member is routable.")
    parser.add_argument("--resign-after", type=float, default=5.0)
    args = parser.parse_args()
    if not pgserver.available():
        sys.exit("PostgreSQL is not installed (apt-get install postgresql): initdb/pg_ctl not found")
    pg_dir, pg_port = pgserver.new_workdir(), pgserver.free_port()
    pgserver.start(pg_dir, pg_port)
    try:
        with benchbroker.workspace("bench-replicas-") as (work, procs):
            db_url = asyncio.run(_new_database(pg_port))
            farm = benchbroker.start_farm(work, args.members, "--resign-after", str(args.resign_after))
            procs.append(farm)
            settings: dict[str, Any] = {"db_url": db_url, "health": {"interval": args.interval}}
            broker_a = benchbroker.start_broker(work, farm.url, args.members, settings, quiet=True, name="a")
            procs.append(broker_a)
            config_b = _replica_b(work, work / "a" / "broker.toml")
            broker_b = benchbroker.spawn([sys.executable, "-c", benchbroker.QUIET_SERVE, "serve", "--config",
                                          str(config_b), "--port", "0"], "fedbroker listening on", work / "b.log")
            procs.append(broker_b)
            started = time.monotonic()
            routable = [asyncio.run(benchbroker.wait_routable(b.url, args.members, timeout=300.0))
                        for b in (broker_a, broker_b)]
            warmup = time.monotonic() - started
            time.sleep(args.interval)  # one interval for the lease split to settle after the first burst
            asyncio.run(_poll_counts(farm.url))  # start counting now
            cpu = [benchbroker.cpu_seconds(b.popen.pid) for b in (broker_a, broker_b)]
            begin = time.monotonic()
            time.sleep(args.window)
            counts = asyncio.run(_poll_counts(farm.url))
            elapsed = time.monotonic() - begin
            shares = [(benchbroker.cpu_seconds(b.popen.pid) - c) / elapsed for b, c in zip((broker_a, broker_b), cpu)]
            rss = [benchbroker.rss_bytes(b.popen.pid) / 2**20 for b in (broker_a, broker_b)]
            still = [asyncio.run(benchbroker.wait_routable(b.url, args.members, timeout=5.0)) for b in (broker_a, broker_b)]
    finally:
        pgserver.stop(pg_dir)
    per_member = list(counts.values())
    ideal = elapsed / args.interval  # polls per member over the window, between both replicas
    total = sum(per_member)
    # With 20 % jitter a member's polls in the window range over floor/ceil of window/interval
    # give or take one; twice the ideal would mean both replicas poll it.
    over = sum(1 for c in per_member if c > math.ceil(ideal * 1.25))
    print(
        f"bench=replicas members={args.members} replicas=2 interval_s={args.interval:g} window_s={elapsed:.1f} "
        f"routable_a={routable[0]} routable_b={routable[1]} routable_end_a={still[0]} routable_end_b={still[1]} "
        f"warmup_s={warmup:.0f} polls_per_s={total / elapsed:.1f} ideal_polls_per_s={args.members / args.interval:.1f} "
        f"polls_per_member_mean={statistics.fmean(per_member):.2f} ideal_per_member={ideal:.2f} "
        f"polls_per_member_min={min(per_member)} polls_per_member_max={max(per_member)} "
        f"members_never_polled={sum(1 for c in per_member if c == 0)} members_polled_too_often={over} "
        f"cpu_share_a={shares[0]:.3f} cpu_share_b={shares[1]:.3f} rss_mb_a={rss[0]:.0f} rss_mb_b={rss[1]:.0f} "
        f"{benchbroker.machine()}",
        flush=True,
    )


if __name__ == "__main__":
    main()
