"""``fedbroker route``: argument handling and the table it prints."""

from __future__ import annotations

import argparse
import io

import pytest

from fedbroker.cli.routecmd import add_parser, render, split_target

DECISION = {
    "decision_id": "abc", "provider": "gh", "spec": "o/r/HEAD", "repo_key": "gh:o/r", "data": ["10.1/x"],
    "client_region": None,
    "candidates": [
        {"member_id": "beta", "rank": 1, "routable": True, "cost": 12.5, "parts": {"data": 0.0, "image": 0.0},
         "reason": "chosen: lowest cost"},
        {"member_id": "alpha", "rank": 2, "routable": True, "cost": 132.5, "parts": {"data": 60.0, "image": 120.0},
         "reason": "cost 120.0 s above the chosen member, mostly image (+120.0 s)"},
        {"member_id": "gamma", "rank": 3, "routable": False, "cost": None, "parts": {}, "reason": "draining: x"},
    ],
}


@pytest.mark.parametrize(("target", "ok"), [("gh/o/r/HEAD", True), ("zenodo/10.1/x", True), ("nope/x", False),
                                            ("gh", False)], ids=["gh", "zenodo", "unknown-provider", "no-spec"])
def test_split_target(target: str, ok: bool) -> None:
    if ok:
        assert split_target(target)[0] == target.split("/")[0]
    else:
        with pytest.raises(ValueError):
            split_target(target)


def test_explain_table_shows_every_part_and_reason() -> None:
    out = io.StringIO()
    render(DECISION, True, out)
    text = out.getvalue()
    assert "data" in text.splitlines()[1] and "image" in text.splitlines()[1]
    assert "mostly image" in text and "draining: x" in text and "132.5" in text


def test_parser() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["route", "gh/o/r/HEAD", "--data", "a", "--data", "b", "--explain", "--url", "http://x"])
    assert args.data == ["a", "b"] and args.explain and args.func.__name__ == "run"
