"""Static types: mypy, strict, on fedproto and the broker's routing (configured in pyproject.toml).

Run here so `make test`, and so CI, fails on a type error. mypy keeps its cache in
.mypy_cache, so a second run takes seconds.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_fedproto_and_routing_have_no_type_errors_under_strict_mypy() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True and set(config["files"]) == {"specs/fedproto", "broker/fedbroker/routing"}
    run = _mypy()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout


def test_the_type_check_is_strict_enough_to_catch_an_untyped_function(tmp_path: Path) -> None:
    sloppy = tmp_path / "sloppy.py"
    sloppy.write_text("def cost(member):\n    return member.load * 2\n")
    run = _mypy("--config-file", str(ROOT / "pyproject.toml"), str(sloppy))
    assert run.returncode == 1 and "Function is missing a type annotation" in run.stdout, run.stdout + run.stderr
