"""Benchmark: 1,000 concurrent launch event streams relayed by the broker, held open.

Run: .venv/bin/python benchmarks/bench_streams.py [--streams 1000] [--seconds 20] [--members 50]
The member farm streams one ``building`` event per second per launch (it never finishes).
Baseline in the same run: the same number of streams opened straight at the farm. Reports
the broker's memory per open stream, events/s the clients received through the broker and
directly, and their ratio (1.00: relaying loses no rate), and the broker's CPU per relayed launch
(opening: admission, decision, the signed launch request to the member) and per relayed event,
next to the farm's for the same streams opened straight at it. One machine-readable summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Awaitable, Callable

import aiohttp

import benchbroker
import fleet

# One client opens every stream here: lift the per-client cap on open streams (rate_limit.streams_per_client).
SETTINGS = {"health": {"interval": 10.0}, "routing": {"keepalive": 10.0}, "rate_limit": {"streams_per_client": 0}}
OPEN_TIMEOUT = 60.0


async def _count_events(resp: aiohttp.ClientResponse, counter: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        line = await resp.content.readline()
        if not line:
            return
        if line.startswith(b"data:"):
            counter[0] += 1


Opener = Callable[[aiohttp.ClientSession, int], Awaitable[aiohttp.ClientResponse]]


async def hold_streams(opener: Opener, streams: int, seconds: float, pid: int) -> dict[str, float]:
    """Open ``streams`` streams, then count events over ``seconds``; RSS of ``pid`` before and while open."""
    rss_before = benchbroker.rss_bytes(pid)
    counter, stop = [0], asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        started, cpu0 = time.monotonic(), benchbroker.cpu_seconds(pid)
        responses = await asyncio.wait_for(asyncio.gather(*(opener(http, i) for i in range(streams))), OPEN_TIMEOUT)
        opened, cpu_open = time.monotonic() - started, benchbroker.cpu_seconds(pid) - cpu0
        readers = [asyncio.create_task(_count_events(r, counter, stop)) for r in responses]
        await asyncio.sleep(2)  # the first events and keepalives pass; then measure
        before, t0, cpu1 = counter[0], time.monotonic(), benchbroker.cpu_seconds(pid)
        await asyncio.sleep(seconds)
        events, wall, cpu_hold = counter[0] - before, time.monotonic() - t0, benchbroker.cpu_seconds(pid) - cpu1
        rss_open = benchbroker.rss_bytes(pid)
        stop.set()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for r in responses:
            r.close()
    ok = sum(1 for r in responses if r.status == 200)
    return {"ok": ok, "open_s": opened, "events_per_s": events / wall, "rss_per_stream": (rss_open - rss_before) / streams,
            "rss_open": rss_open, "cpu_ms_per_open": cpu_open * 1000 / streams,
            "cpu_us_per_event": cpu_hold * 1e6 / max(1, events)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--members", type=int, default=50)
    args = parser.parse_args()
    with benchbroker.workspace("bench-streams-") as (work, procs):
        farm = benchbroker.start_farm(work, args.members, "--event-interval", "1")
        procs.append(farm)
        broker = benchbroker.start_broker(work, farm.url, args.members, SETTINGS)
        procs.append(broker)
        asyncio.run(benchbroker.wait_routable(broker.url, args.members))
        accept = {"Accept": "text/event-stream"}

        async def direct(http: aiohttp.ClientSession, i: int) -> aiohttp.ClientResponse:
            return await http.post(f"{farm.url}/{fleet.member_id(i % args.members)}/api/v1/launches", data=b"{}")

        async def relayed(http: aiohttp.ClientSession, i: int) -> aiohttp.ClientResponse:
            return await http.get(f"{broker.url}/build/gh/org{i}/repo{i}/HEAD", headers=accept)

        base = asyncio.run(hold_streams(direct, args.streams, args.seconds, farm.popen.pid))
        relay = asyncio.run(hold_streams(relayed, args.streams, args.seconds, broker.popen.pid))
        print(f"bench=streams streams={args.streams} members={args.members} relayed_ok={relay['ok']:.0f} "
              f"relayed_open_s={relay['open_s']:.1f} relayed_events_per_s={relay['events_per_s']:.0f} "
              f"direct_events_per_s={base['events_per_s']:.0f} "
              f"ratio={relay['events_per_s'] / max(1.0, base['events_per_s']):.2f} "
              f"broker_kb_per_stream={relay['rss_per_stream'] / 1024:.1f} "
              f"farm_kb_per_stream={base['rss_per_stream'] / 1024:.1f} "
              f"broker_rss_mb={relay['rss_open'] / 2**20:.0f} "
              f"broker_cpu_ms_per_launch={relay['cpu_ms_per_open']:.2f} farm_cpu_ms_per_launch={base['cpu_ms_per_open']:.2f} "
              f"broker_cpu_us_per_event={relay['cpu_us_per_event']:.0f} farm_cpu_us_per_event={base['cpu_us_per_event']:.0f} "
              f"{benchbroker.machine()}")


if __name__ == "__main__":
    main()
