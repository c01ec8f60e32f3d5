"""Benchmark: the broker's CPU share and memory while health-polling 1,000 members every 10 s.

Run: .venv/bin/python benchmarks/bench_polling.py [--members 1000] [--seconds 30]
A fake member farm serves the signed ads (400 image hashes and 12 datasets each); a real
``fedbroker serve`` polls, verifies and records them. The baseline in the same run is a
second broker with no members, measured over the same window: the difference is what
polling costs. Prints one machine-readable summary line (CPU share: 1.0 = one core busy).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

import benchbroker

SETTINGS = {"health": {"interval": 10.0}}


async def _farm_polls(farm_url: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{farm_url}/_stats") as resp:
            return int((await resp.json())["polls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="Measured window (after every member is up).")
    args = parser.parse_args()
    with benchbroker.workspace("bench-polling-") as (work, procs):
        (work / "idle").mkdir()
        farm = benchbroker.start_farm(work, args.members)
        procs.append(farm)
        broker = benchbroker.start_broker(work, farm.url, args.members, SETTINGS)
        procs.append(broker)
        idle = benchbroker.start_broker(work / "idle", farm.url, 0, SETTINGS)
        procs.append(idle)
        routable = asyncio.run(benchbroker.wait_routable(broker.url, args.members))
        time.sleep(2)  # let the first burst of polls (every member due at once) spread out
        pids = (broker.popen.pid, idle.popen.pid)
        cpu0, polls0, t0 = [benchbroker.cpu_seconds(p) for p in pids], asyncio.run(_farm_polls(farm.url)), time.monotonic()
        time.sleep(args.seconds)
        cpu1, polls1, t1 = [benchbroker.cpu_seconds(p) for p in pids], asyncio.run(_farm_polls(farm.url)), time.monotonic()
        wall = t1 - t0
        share = [(b - a) / wall for a, b in zip(cpu0, cpu1)]
        rss = [benchbroker.rss_bytes(p) for p in pids]
        print(f"bench=polling members={args.members} routable={routable} interval_s={SETTINGS['health']['interval']:g} "
              f"window_s={wall:.0f} polls_per_s={(polls1 - polls0) / wall:.1f} "
              f"broker_cpu_share={share[0]:.3f} idle_cpu_share={share[1]:.3f} "
              f"polling_cpu_share={share[0] - share[1]:.3f} "
              f"cpu_ms_per_poll={(cpu1[0] - cpu0[0] - (cpu1[1] - cpu0[1])) * 1000 / max(1, polls1 - polls0):.2f} "
              f"broker_rss_mb={rss[0] / 2**20:.1f} idle_rss_mb={rss[1] / 2**20:.1f} "
              f"kb_per_member={(rss[0] - rss[1]) / 1024 / max(1, args.members):.1f} {benchbroker.machine()}")


if __name__ == "__main__":
    main()
