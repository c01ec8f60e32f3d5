"""The command line and the federation file: generate then run, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.replay.cli import main
from benchmarks.replay.federation import load_federation


def test_generate_then_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    assert main(["generate", "--preset", "workshops", "--launches", "3000", "--seed", "2", "-o", str(trace)]) == 0
    assert main(["run", str(trace), "--jobs", "1", "--min-hour-load", "1"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("trace=")]
    assert [dict(kv.split("=") for kv in l.split())["policy"] for l in lines] == ["random", "rendezvous", "bounded", "router"]
    for line in lines:
        fields = dict(kv.split("=") for kv in line.split())
        assert fields["launches"] == "3000"
        assert {"builds_per_1000", "peak_over_fair_p99", "peak_over_fair_max", "refused", "dataset_local",
                "ttr_mean", "ttr_p95"} <= set(fields)


def test_run_reports_a_bad_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("timestamp,provider,spec,ref\n2026-01-05T08:00:00Z,gh,org/repo\n")
    assert main(["run", str(trace), "--jobs", "1"]) == 2
    assert "bad.csv:2: expected 4 fields, got 3" in capsys.readouterr().err


def test_federation_file(tmp_path: Path) -> None:
    path = tmp_path / "fed.json"
    path.write_text(json.dumps([{"id": "a", "weight": 2, "capacity": 10, "datasets": ["10.5281/zenodo.1"]}]))
    (member,) = load_federation(path)
    assert (member.id, member.weight, member.datasets) == ("a", 2, ("10.5281/zenodo.1",))
    path.write_text(json.dumps([{"id": "a", "weight": 2, "capacity": 10, "colour": "red"}]))
    with pytest.raises(ValueError, match="unknown field"):
        load_federation(path)
