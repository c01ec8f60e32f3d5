"""Benchmark: front-door throughput, redirect mode, 1,000 members polled live, distinct repos, against a bare aiohttp 307.

Run: .venv/bin/python benchmarks/bench_frontdoor.py [--members 1000] [--seconds 10] [--connections 64]

Needs ``wrk`` and ``taskset``. A member farm serves 1,000 members' signed ads; a real
``fedbroker serve --mode redirect`` polls and verifies them every 10 s as usual (health churn
at the real rate: ~100 poll results a second, each a new ad); in the same run, a bare aiohttp
server answers the same 307 with the same cookie. Each server is pinned to core 0, and wrk
(``-t1``) and the farm to core 1, so the server under test has one core to itself; the servers
run one after the other.

Requests go to distinct repositories, chosen by a wrk Lua script: uniform over 100,000 repos,
and Zipf (s = 1.1) over the same 100,000. The broker runs as shipped (INFO: access line and
decision line per launch) and with ``[logging] access_log = false, decisions = false``
(``quiet``). Prints one machine-readable summary line; ``*_ratio`` is broker/bare req/s in the
same run, with the same pinning and the same request mix; ``*_cpu_ratio`` is bare/broker CPU
time per answered request, which other load on a shared machine does not distort.

A third broker (``replayed``, quiet logs) runs with its routing decisions replayed
(``replayserve.py``: after 300 real ones, each decision is one of those again, the index still
kept up to date before each). ``*_replayed_decision_cpu_us_per_req`` is the CPU it spent inside
decisions (index upkeep and replay), and ``*_rest_cpu_ratio`` is bare/broker CPU per request
without it: the front door's own cost (HTTP, parsing, admission, the ticket, the 307, and the
polling that runs meanwhile), which the ranking's cost would otherwise hide.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import time
import shutil
import subprocess
import sys
from pathlib import Path

from aiohttp import web

import benchbroker

REPOS = 100_000
SERVER_CPU, CLIENT_CPU = "0", "1"

# request() picks the repo; Zipf by inverse CDF over a table built once per wrk thread.
LUA = """
local n, dist = %(n)d, "%(dist)s"
local cdf = {}
if dist == "zipf" then
  local total = 0
  for k = 1, n do total = total + 1 / k ^ 1.1; cdf[k] = total end
  for k = 1, n do cdf[k] = cdf[k] / total end
end
local function pick()
  if dist ~= "zipf" then return math.random(0, n - 1) end
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end
request = function()
  local k = pick()
  return wrk.format("GET", "/build/gh/org" .. k .. "/repo" .. k .. "/HEAD")
end
-- A refusal is a 200 event stream ("failed"), which wrk counts as a success: count every answer
-- that is not the 307 itself, so a broker that redirects nobody cannot pass for a fast one.
not_redirected = 0
response = function(status, headers, body)
  if status ~= 307 then not_redirected = not_redirected + 1 end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("not_redirected") end
  io.write(string.format("not_redirected=%%d\\n", total))
end
"""


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


def wrk(url: str, seconds: float, connections: int, script: Path) -> dict[str, float]:
    """Requests/s and p50/p99 latency (ms) from one wrk run on the client core; non-3xx answers are errors."""
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                          "--latency", "--timeout", "5s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    refused = int(re.search(r"^not_redirected=(\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    return {"not_redirected": float(refused),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
            "p50": latency("50"), "p99": latency("99"), "errors": float(errors.group(1)) if errors else 0.0}


def replayed_decision_cpu(proc: benchbroker.Proc, report: Path) -> float:
    """Seconds of CPU the replaying broker spent inside decisions so far (it writes them on SIGUSR1)."""
    report.unlink(missing_ok=True)
    proc.popen.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if report.exists() and (text := report.read_text()):
            return float(text)
        time.sleep(0.02)
    raise RuntimeError("the replaying broker did not report its decision CPU")


def start_replayed(work: Path, farm_url: str, members: int, settings: dict[str, object]) -> benchbroker.Proc:
    """A broker whose decisions are replayed (``replayserve.py``), on its own initialised directory."""
    benchbroker.start_broker(work, farm_url, members, settings, name="replayed").stop()  # init and register
    os.environ["REPLAY_CPU_FILE"] = str(work / "replayed-cpu")
    return benchbroker.spawn([sys.executable, str(Path(__file__).with_name("replayserve.py")), "serve", "--config",
                              str(work / "replayed" / "broker.toml"), "--port", "0"],
                             "fedbroker listening on", work / "replayed.log", cpu=SERVER_CPU)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})")
    with benchbroker.workspace("bench-frontdoor-") as (work, procs):
        farm = benchbroker.start_farm(work, args.members, cpu=CLIENT_CPU)
        procs.append(farm)
        scripts = {}
        for dist in ("uniform", "zipf"):
            scripts[dist] = work / f"{dist}.lua"
            scripts[dist].write_text(LUA % {"n": REPOS, "dist": dist})
        rows: dict[tuple[str, str], dict[str, float]] = {}
        routable = args.members
        quiet_logs = {"logging": {"access_log": False, "decisions": False}}
        # One server at a time on the server core, each measured on both request mixes after 2 s of warm-up.
        for name, logs in (("broker", {}), ("quiet", quiet_logs), ("replayed", quiet_logs), ("bare", None)):
            if logs is None:
                server = benchbroker.spawn([sys.executable, __file__, "--serve-bare"], "bare listening on",
                                           work / "bare.log", cpu=SERVER_CPU)
            elif name == "replayed":
                server = start_replayed(work, farm.url, args.members, {"mode": "redirect", **logs})
            else:
                server = benchbroker.start_broker(work, farm.url, args.members, {"mode": "redirect", **logs},
                                                  name=name, cpu=SERVER_CPU)
            procs.append(server)
            if logs is not None:
                routable = min(routable, asyncio.run(benchbroker.wait_routable(server.url, args.members)))
            for dist, script in scripts.items():
                wrk(server.url + "/build/gh/org/repo/HEAD", 2, args.connections, script)
                report = work / "replayed-cpu"
                decided = replayed_decision_cpu(server, report) if name == "replayed" else 0.0
                cpu = benchbroker.cpu_seconds(server.popen.pid)
                rows[name, dist] = row = wrk(server.url + "/build/gh/org/repo/HEAD", args.seconds, args.connections, script)
                # CPU per answered request: what a shared machine's other load cannot hide (it
                # also includes the broker's polling during the window, as in production).
                answered = max(1.0, row["requests"])
                row["cpu_us"] = (benchbroker.cpu_seconds(server.popen.pid) - cpu) / answered * 1e6
                if name == "replayed":
                    row["decision_cpu_us"] = (replayed_decision_cpu(server, report) - decided) / answered * 1e6
            server.stop()
        fields = [f"bench=frontdoor members={routable}/{args.members} connections={args.connections}"]
        for (name, dist), r in rows.items():
            fields.append(f"{dist}_{name}_rps={r['rps']:.0f} {dist}_{name}_cpu_us_per_req={r['cpu_us']:.0f} "
                          f"{dist}_{name}_p50_ms={r['p50']:.2f} "
                          f"{dist}_{name}_p99_ms={r['p99']:.2f} {dist}_{name}_errors={r['errors']:.0f} "
                          f"{dist}_{name}_not_redirected={r['not_redirected']:.0f}")
        for dist in scripts:
            replayed = rows["replayed", dist]
            fields.append(f"{dist}_replayed_decision_cpu_us_per_req={replayed['decision_cpu_us']:.0f}")
        for dist in scripts:
            bare_rps = rows["bare", dist]["rps"]
            bare_cpu = rows["bare", dist]["cpu_us"]
            rest = max(1.0, rows["replayed", dist]["cpu_us"] - rows["replayed", dist]["decision_cpu_us"])
            fields.append(f"{dist}_ratio={rows['broker', dist]['rps'] / bare_rps:.2f} "
                          f"{dist}_quiet_ratio={rows['quiet', dist]['rps'] / bare_rps:.2f} "
                          f"{dist}_cpu_ratio={bare_cpu / rows['broker', dist]['cpu_us']:.2f} "
                          f"{dist}_quiet_cpu_ratio={bare_cpu / rows['quiet', dist]['cpu_us']:.2f} "
                          f"{dist}_rest_cpu_ratio={bare_cpu / rest:.2f}")
        print(" ".join(fields), benchbroker.machine(), flush=True)


if __name__ == "__main__":
    main()
