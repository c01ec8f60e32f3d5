"""The launch trace: one CSV row per launch (or per ``count`` launches), read and written with checks.

Columns: ``timestamp`` (ISO 8601, UTC), ``provider`` (a BinderHub provider prefix such as
``gh``), ``spec`` (the repo without its ref), ``ref``, and the optional ``data`` (dataset ids
separated by spaces) and ``count`` (identical launches at that instant, default 1). Rows are
sorted by time. Every problem is reported with the file's line number, because traces are
edited by hand and converted from logs, and "bad input somewhere" is no help.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable, Iterator

from fedproto.errors import SpecError
from fedproto.repospec import DATA_PROVIDERS, PROVIDERS, RepoSpec

REQUIRED_COLUMNS = ("timestamp", "provider", "spec", "ref")
OPTIONAL_COLUMNS = ("data", "count")
MAX_COUNT = 100_000


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Launch:
    """One launch (or ``count`` identical ones) at ``time`` seconds since the epoch."""

    time: float
    provider: str
    spec: str
    ref: str
    data: tuple[str, ...] = ()
    count: int = 1

    @property
    def target(self) -> tuple[str, str, str, tuple[str, ...]]:
        """What routing and the image registry depend on; equal targets share cached parsing."""
        return (self.provider, self.spec, self.ref, self.data)


def binderhub_spec(provider: str, spec: str, ref: str) -> str:
    """The BinderHub spec (``org/repo/ref``) for a repo and ref; data providers have no ref."""
    return spec if provider in DATA_PROVIDERS else f"{spec}/{ref}"


def parse_repo(provider: str, spec: str, ref: str) -> RepoSpec:
    """The parsed launch target, with fedproto's own validation."""
    return RepoSpec.parse(provider, binderhub_spec(provider, spec, ref))


def parse_timestamp(value: str) -> float:
    """ISO 8601 with an explicit UTC offset of zero (``Z`` or ``+00:00``) to epoch seconds."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
    if moment.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no timezone; write it in UTC with a trailing Z")
    if moment.utcoffset().total_seconds() != 0:
        raise ValueError(f"timestamp {value!r} is not in UTC")
    return moment.timestamp()


def format_timestamp(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a ``Z``, to the second (sub-second precision is noise here)."""
    return datetime.fromtimestamp(round(seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_header(header: list[str] | None, where: str) -> dict[str, int]:
    if not header:
        raise TraceError(f"{where}:1: empty file; expected a header row {','.join(REQUIRED_COLUMNS)}")
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise TraceError(f"{where}:1: header lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise TraceError(f"{where}:1: unknown column(s) {', '.join(unknown)}")
    return columns


def _parse_row(row: list[str], columns: dict[str, int], checked: set[tuple[str, str, str]]) -> Launch:
    if len(row) != len(columns):
        raise ValueError(f"expected {len(columns)} fields, got {len(row)}")
    provider, spec, ref = row[columns["provider"]], row[columns["spec"]], row[columns["ref"]]
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    if (provider, spec, ref) not in checked:
        try:
            parse_repo(provider, spec, ref)
        except SpecError as exc:
            raise ValueError(f"bad repo: {exc}") from None
        checked.add((provider, spec, ref))
    data = tuple(row[columns["data"]].split()) if "data" in columns else ()
    count = 1
    if "count" in columns and row[columns["count"]].strip():
        text = row[columns["count"]].strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
            raise ValueError(f"count {text!r} is not a whole number from 1 to {MAX_COUNT}")
        count = int(text)
    return Launch(parse_timestamp(row[columns["timestamp"]].strip()), provider, spec, ref, data, count)


def iter_trace(stream: IO[str], where: str = "<trace>") -> Iterator[Launch]:
    """Launches from a CSV stream, checked row by row; raises :class:`TraceError` at the first bad one."""
    reader = csv.reader(stream)
    columns = _check_header(next(reader, None), where)
    checked: set[tuple[str, str, str]] = set()
    previous = float("-inf")
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        try:
            launch = _parse_row(row, columns, checked)
        except ValueError as exc:
            raise TraceError(f"{where}:{line}: {exc}") from None
        if launch.time < previous:
            raise TraceError(f"{where}:{line}: rows must be sorted by timestamp; this one is earlier than the row before")
        previous = launch.time
        yield launch


def read_trace(path: Path) -> list[Launch]:
    """Every launch in the CSV file at ``path``."""
    with open(path, newline="", encoding="utf-8") as stream:
        return list(iter_trace(stream, str(path)))


def write_trace(launches: Iterable[Launch], stream: IO[str]) -> int:
    """Write launches as CSV (with the optional columns); returns the number of rows."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS])
    rows = 0
    for launch in launches:
        writer.writerow(
            [format_timestamp(launch.time), launch.provider, launch.spec, launch.ref, " ".join(launch.data), launch.count]
        )
        rows += 1
    return rows


def expanded_size(launches: Iterable[Launch]) -> int:
    """The number of launches, counting ``count``."""
    return sum(launch.count for launch in launches)
