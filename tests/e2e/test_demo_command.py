"""``fedbroker demo`` as a person runs it: it starts, prints what to open, serves launches, stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from e2ekit import check_ready, launch
from fedbroker.demo.childproc import sweep_processes_under
from fedbroker.demo.repos import DEMO_DATASET

pytestmark = pytest.mark.slow
BANNER_END = "Press Ctrl-C to stop"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    directory = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "fedbroker", "demo", "--port", "0", "--dir", str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, directory
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sweep_processes_under(directory)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 120.0) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"no {marker!r} in the demo's output:\n{''.join(lines)}")


async def test_demo_starts_prints_links_launches_and_stops_cleanly(demo: tuple[subprocess.Popen[str], Path]) -> None:
    proc, directory = demo
    output = read_until(proc, BANNER_END)
    manifest = json.loads((directory / "demo.json").read_text())
    url = manifest["broker_url"]
    assert "development mode" in output
    assert f"Status page:  {url}/status" in output
    assert [m["id"] for m in manifest["members"]] == ["berlin", "montreal", "tokyo"]
    assert all(m["pid"] and Path(m["config"]).exists() for m in manifest["members"])
    dataset_repo = next(r for r in manifest["repos"] if r["data"] == [DEMO_DATASET])
    assert dataset_repo["launch_url"] in output and "data=10.5281%2Fzenodo.3242074" in dataset_repo["launch_url"]

    ready = await check_ready(await launch(url, dataset_repo["spec"], (DEMO_DATASET,)))
    assert ready["member"] == "berlin"

    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "demo: stopped" in rest
    assert sweep_processes_under(directory) == [], "a broker, agent or jupyter-server outlived the demo"
