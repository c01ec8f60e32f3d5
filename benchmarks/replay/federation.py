"""The simulated federation's description: each member's weight, capacity, place, data and behaviour.

A federation is a tuple of :class:`MemberSpec`. The ``mybinder`` preset is shaped like
mybinder.org's: one large member, one medium, two small, in different regions, capacity in
proportion to weight, and the generated datasets spread over them (each stored at one member).
A JSON file (a list of objects with :class:`MemberSpec`'s fields) describes any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from fedproto.datasets import normalise_dataset_id

from .generator import TraceShape, dataset_id


@dataclass(frozen=True)
class MemberSpec:
    """One simulated member. Times are seconds; lengths are lognormal (median, sigma)."""

    id: str
    weight: float
    capacity: int
    region: str = ""
    lat: float | None = None
    lon: float | None = None
    datasets: tuple[str, ...] = ()
    session_median: float = 600.0
    session_sigma: float = 0.9
    build_median: float = 240.0
    build_sigma: float = 0.6
    launch_seconds: float = 8.0  # from "image ready" to "server ready"
    failure_probability: float = 0.01

    def stores(self, wanted: str) -> bool:
        """Whether this member stores dataset ``wanted`` (ids compared in fedproto's normal form)."""
        return normalise_dataset_id(wanted) in self.normal_datasets

    @property
    def normal_datasets(self) -> frozenset[str]:
        return frozenset(normalise_dataset_id(d) for d in self.datasets)


def _spread_datasets(ids: list[str], n_datasets: int) -> dict[str, tuple[str, ...]]:
    stored: dict[str, list[str]] = {m: [] for m in ids}
    for k in range(n_datasets):
        stored[ids[k % len(ids)]].append(dataset_id(k))
    return {m: tuple(v) for m, v in stored.items()}


def mybinder(n_datasets: int = TraceShape().datasets, scale: float = 1.0) -> tuple[MemberSpec, ...]:
    """Four members weighted 4:2:1:1 with capacity in proportion (800 servers at ``scale`` 1)."""
    layout = [
        ("alpha", 4.0, 400, "us-central", 41.3, -95.9, 0.01),
        ("beta", 2.0, 200, "eu-central", 50.9, 6.9, 0.01),
        ("gamma", 1.0, 100, "eu-west", 48.9, 2.3, 0.02),
        ("delta", 1.0, 100, "us-west", 37.4, -122.1, 0.02),
    ]
    stored = _spread_datasets([row[0] for row in layout], n_datasets)
    return tuple(
        MemberSpec(id=i, weight=w, capacity=max(1, round(c * scale)), region=r, lat=lat, lon=lon,
                   datasets=stored[i], failure_probability=p)
        for i, w, c, r, lat, lon, p in layout
    )


def load_federation(path: Path) -> tuple[MemberSpec, ...]:
    """Members from a JSON list of objects with :class:`MemberSpec`'s field names."""
    known = {f.name for f in fields(MemberSpec)}
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the federation: {exc}") from None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: expected a non-empty JSON list of members")
    members = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - known) if isinstance(row, dict) else ["<not an object>"]
        if unknown:
            raise ValueError(f"{path}: member {i}: unknown field(s) {', '.join(unknown)}")
        members.append(MemberSpec(**{**row, "datasets": tuple(row.get("datasets", ()))}))
    if len({m.id for m in members}) != len(members):
        raise ValueError(f"{path}: member ids must be unique")
    return tuple(members)
