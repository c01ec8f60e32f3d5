"""Benchmark: front-door throughput, redirect mode, 1,000 healthy members, against a bare aiohttp 307.

Run: .venv/bin/python benchmarks/bench_frontdoor.py [--members 1000] [--seconds 10] [--connections 32]
Needs ``wrk``. Starts a member farm, a real ``fedbroker serve --mode redirect`` whose members
are polled and verified as usual, and (in the same run, on the same machine) a bare aiohttp
server answering the same 307. Both are loaded by wrk with one thread, so the server keeps a
core of the two. The broker runs twice: as ``fedbroker serve`` ships (INFO logs: an access line
and a decision line per launch) and with logging at WARNING (``quiet``). Prints one
machine-readable summary line; ``ratio`` is broker/bare req/s, ``quiet_ratio`` quiet/bare.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys

from aiohttp import web

import benchbroker

PATH = "/build/gh/org/repo/HEAD"


def bare_app() -> web.Application:
    """The least an aiohttp server can do for this route: a fixed 307 with a sticky cookie."""

    async def redirect(request: web.Request) -> web.Response:
        resp = web.Response(status=307, headers={"Location": "https://m00001.example.org" + request.raw_path,
                                                 "X-Federation-Decision": "bare"})
        resp.set_cookie("federation_member", "m00001", max_age=3600, path="/", httponly=True, samesite="Lax")
        return resp

    app = web.Application()
    app.router.add_get("/build/{provider}/{spec:.+}", redirect)
    return app


def serve_bare() -> None:
    async def run() -> None:
        runner = web.AppRunner(bare_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
        print(f"bare listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    """Requests/s and p50/p99 latency (ms) from one wrk run; non-3xx answers are counted as errors."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s", url],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": latency("50"), "p99": latency("99"), "errors": float(errors.group(1)) if errors else 0.0,
            "socket_errors": 1.0 if socket_errors else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    with benchbroker.workspace("bench-frontdoor-") as (work, procs):
        farm = benchbroker.start_farm(work, args.members)
        procs.append(farm)
        broker = benchbroker.start_broker(work, farm.url, args.members, {"mode": "redirect"})
        procs.append(broker)
        routable = asyncio.run(benchbroker.wait_routable(broker.url, args.members))
        bare = benchbroker.spawn([sys.executable, __file__, "--serve-bare"], "bare listening on", work / "bare.log")
        procs.append(bare)
        wrk(broker.url + PATH, 2, args.connections)  # warm-up: first decisions build the routing memo
        b = wrk(broker.url + PATH, args.seconds, args.connections)
        broker.stop()
        # The same broker with logging at WARNING: what the INFO access and decision lines cost.
        quiet = benchbroker.start_broker(work, farm.url, args.members, {}, quiet=True)
        procs.append(quiet)
        routable_quiet = asyncio.run(benchbroker.wait_routable(quiet.url, args.members))
        wrk(quiet.url + PATH, 2, args.connections)
        q = wrk(quiet.url + PATH, args.seconds, args.connections)
        base = wrk(bare.url + PATH, args.seconds, args.connections)
        print(f"bench=frontdoor members={args.members} routable={min(routable, routable_quiet)} "
              f"connections={args.connections} "
              f"broker_rps={b['rps']:.0f} broker_p50_ms={b['p50']:.2f} broker_p99_ms={b['p99']:.2f} "
              f"broker_errors={b['errors'] + q['errors']:.0f} quiet_rps={q['rps']:.0f} quiet_p50_ms={q['p50']:.2f} "
              f"quiet_p99_ms={q['p99']:.2f} bare_rps={base['rps']:.0f} bare_p50_ms={base['p50']:.2f} "
              f"bare_p99_ms={base['p99']:.2f} ratio={b['rps'] / base['rps']:.2f} "
              f"quiet_ratio={q['rps'] / base['rps']:.2f} {benchbroker.machine()}")


if __name__ == "__main__":
    main()
