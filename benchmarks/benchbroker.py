"""A real ``fedbroker serve`` process under benchmark, with its members behind a fake member farm.

Members are registered straight into the broker's store (no enrollment round trips) with
agent URLs into the farm; the broker then polls and verifies their signed ads as it would
real members'. Process CPU time and memory are read from /proc, so numbers are the broker's
own, not the benchmark driver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import tomli_w

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing

from fedbroker.config import BrokerConfig
from fedbroker.initdir import init_broker
from fedbroker.registry.store import RegistryStore

import fleet
import memberfarm

HERE = Path(__file__).resolve().parent


@dataclass
class Proc:
    """A child process and the URL it announced."""

    popen: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def spawn(args: list[str], prefix: str, log: Path, timeout: float = 60.0, cpu: str | None = None) -> Proc:
    """Start ``args`` (pinned to the cores ``cpu`` names, when given, with taskset); wait for a stdout
    line starting with ``prefix`` and ending in its URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    if cpu is not None:
        args = ["taskset", "-c", cpu, *args]
    popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(log, "wb"), env=env)
    deadline = time.monotonic() + timeout
    assert popen.stdout is not None
    while time.monotonic() < deadline:
        line = popen.stdout.readline().decode().strip()
        if line.startswith(prefix):
            return Proc(popen, line.rsplit(" ", 1)[1])
        if not line and popen.poll() is not None:
            break
    popen.kill()
    raise RuntimeError(f"{args[0]} did not start: {log.read_text()[-2000:]}")


def start_farm(workdir: Path, members: int, *extra: str, cpu: str | None = None) -> Proc:
    return spawn([sys.executable, str(HERE / "memberfarm.py"), "--members", str(members),
                  "--key-dir", str(workdir / memberfarm.FARM_KEY_DIR), *extra],
                 "farm listening on", workdir / "farm.log", cpu=cpu)


async def _register(config: BrokerConfig, farm_url: str, members: int, key_dir: Path) -> None:
    keyring = KeyRing.load_or_create(key_dir)
    store = await RegistryStore.open(config.resolved_db_url, SystemClock())
    try:
        async with store.write() as tx:
            for i in range(members):
                mid = fleet.member_id(i)
                await tx.insert_member(fleet.record(i, keyring, f"{farm_url}/{mid}", random.Random(i)))
    finally:
        await store.close()


# ``fedbroker serve`` with its logging at WARNING instead of INFO (no access or decision log lines).
QUIET_SERVE = (
    "import logging, sys; from fedbroker.cli import main; "
    "logging.basicConfig = lambda **kw: logging.root.setLevel(logging.WARNING); sys.exit(main())"
)


def start_broker(workdir: Path, farm_url: str, members: int, settings: dict[str, Any], *, quiet: bool = False,
                 name: str = "broker", cpu: str | None = None) -> Proc:
    """Init a broker dir ``name`` (once), register ``members`` farm members, and run ``fedbroker serve``."""
    directory = workdir / name
    config_path = directory / "broker.toml"
    if not config_path.exists():
        config_path, _admin = asyncio.run(init_broker(directory, {"broker_id": "bench"}))
        config_path.write_text(tomli_w.dumps({"broker_id": "bench", "dev": True, **settings}))
        asyncio.run(_register(BrokerConfig.load(config_path), farm_url, members, workdir / memberfarm.FARM_KEY_DIR))
    command = [str(Path(sys.executable).parent / "fedbroker")]
    if quiet:
        command = [sys.executable, "-c", QUIET_SERVE]
    return spawn([*command, "serve", "--config", str(config_path), "--port", "0"],
                 "fedbroker listening on", workdir / f"{name}{'-quiet' if quiet else ''}.log", cpu=cpu)


async def wait_routable(url: str, members: int, timeout: float = 120.0) -> int:
    """Wait until ``members`` members are routable (per /health); return how many are."""
    deadline = time.monotonic() + timeout
    count = 0
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{url}/health") as resp:
                body = await resp.json()
            count = next((c.get("count", 0) for c in body["checks"] if c["service"] == "Routable members"), 0)
            if count >= members:
                return count
            await asyncio.sleep(0.5)
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> str:
    """``nproc=N cpu="model"`` for the summary line."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    return f'nproc={os.cpu_count()} cpu="{model}" load1={os.getloadavg()[0]:.2f}'


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[tuple[Path, list[Proc]]]:
    """A scratch directory and a list of started processes; on exit every process is stopped
    (newest first, so the broker goes before the farm it polls) and the directory removed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    procs: list[Proc] = []
    try:
        yield work, procs
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
