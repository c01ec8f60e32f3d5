"""The trace reader: good files read back what was written, bad ones fail with the line number."""

from __future__ import annotations

import io

import pytest

from benchmarks.replay.trace import Launch, TraceError, expanded_size, iter_trace, write_trace

HEADER = "timestamp,provider,spec,ref,data,count\n"
GOOD = "2026-01-05T08:00:00Z,gh,org/repo,HEAD,,1\n"


def read(text: str) -> list[Launch]:
    return list(iter_trace(io.StringIO(text), "t.csv"))


def test_round_trip() -> None:
    launches = [
        Launch(1_767_600_000.0, "gh", "org/repo", "HEAD"),
        Launch(1_767_600_001.0, "gl", "group%2Fproject", "main", ("10.5281/zenodo.1", "10.5281/zenodo.2"), 3),
    ]
    out = io.StringIO()
    assert write_trace(launches, out) == 2
    assert read(out.getvalue()) == launches
    assert expanded_size(launches) == 4


def test_optional_columns_may_be_absent() -> None:
    assert read("timestamp,provider,spec,ref\n2026-01-05T08:00:00+00:00,gh,org/repo,HEAD\n") == [
        Launch(1_767_600_000.0, "gh", "org/repo", "HEAD")
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("", "t.csv:1: empty file", id="empty"),
        pytest.param("timestamp,provider,spec\n", "t.csv:1: header lacks column(s) ref", id="missing-column"),
        pytest.param("timestamp,provider,spec,ref,user\n", "t.csv:1: unknown column(s) user", id="unknown-column"),
        pytest.param(HEADER + GOOD + "yesterday,gh,org/repo,HEAD,,1\n", "t.csv:3: timestamp 'yesterday' is not ISO 8601", id="bad-time"),
        pytest.param(HEADER + "2026-01-05T08:00:00,gh,org/repo,HEAD,,1\n", "t.csv:2: timestamp '2026-01-05T08:00:00' has no timezone", id="naive-time"),
        pytest.param(HEADER + "2026-01-05T08:00:00+01:00,gh,org/repo,HEAD,,1\n", "is not in UTC", id="not-utc"),
        pytest.param(HEADER + GOOD + "2026-01-05T07:59:59Z,gh,org/repo,HEAD,,1\n", "t.csv:3: rows must be sorted", id="unsorted"),
        pytest.param(HEADER + "2026-01-05T08:00:00Z,svn,org/repo,HEAD,,1\n", "t.csv:2: unknown provider 'svn'", id="provider"),
        pytest.param(HEADER + "2026-01-05T08:00:00Z,gh,org,HEAD,,1\n", "t.csv:2: bad repo", id="bad-spec"),
        pytest.param(HEADER + "2026-01-05T08:00:00Z,gh,org/repo,..,,1\n", "t.csv:2: bad repo: spec must not contain '.' or '..' path segments", id="bad-ref"),
        pytest.param(HEADER + "2026-01-05T08:00:00Z,gh,org/repo,HEAD,,0\n", "t.csv:2: count '0'", id="zero-count"),
        pytest.param(HEADER + "2026-01-05T08:00:00Z,gh,org/repo,HEAD,,x\n", "t.csv:2: count 'x'", id="text-count"),
        pytest.param(HEADER + GOOD + "2026-01-05T08:00:00Z,gh,org/repo\n", "t.csv:3: expected 6 fields, got 3", id="short-row"),
    ],
)
def test_bad_input_names_the_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as err:
        read(text)
    assert message in str(err.value)
