"""The demo's member sites: who they are, where, how big, which datasets, and their ``member.toml``.

The broker package never imports the member agent, so the config is written here as plain
TOML from the documented ``member.toml`` keys; ``fedmember serve`` validates it on start.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .repos import DEMO_DATASET

# Big enough that fetching it elsewhere clearly loses to launching where it is stored.
DEMO_DATASET_BYTES = 5 * 1024**3

HEADER = "# Written by `fedbroker demo`: a member agent with the local backend, in development mode.\n\n"


@dataclass(frozen=True)
class DemoSite:
    """One demo member: identity, place, capacity, and whether it stores the demo dataset."""

    member_id: str
    display_name: str
    lat: float
    lon: float
    region: str
    country: str
    capacity: int
    stores_dataset: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def location(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon, "region": self.region, "country": self.country}


SITES: tuple[DemoSite, ...] = (
    DemoSite("berlin", "Berlin (data centre)", 52.52, 13.405, "eu-central", "DE", capacity=4, stores_dataset=True),
    DemoSite("montreal", "Montréal", 45.5017, -73.5673, "ca-east", "CA", capacity=3),
    DemoSite("tokyo", "Tokyo", 35.6762, 139.6503, "ap-northeast", "JP", capacity=2),
)


def member_settings(site: DemoSite, agent_url: str, port: int, dataset_dir: Path | None) -> dict[str, Any]:
    """The ``[member]`` table for ``site`` listening on ``port``."""
    member: dict[str, Any] = {
        "id": site.member_id,
        "display_name": site.display_name,
        "agent_url": agent_url,
        # The local backend's servers are reached on loopback; redirect mode sends browsers here.
        "public_url": agent_url,
        "host": "127.0.0.1",
        "port": port,
        "dev": True,
        "status_ttl": 30.0,
        "location": site.location(),
        "datasets": [],
    }
    if site.stores_dataset and dataset_dir is not None:
        member["datasets"] = [{"id": DEMO_DATASET, "size_bytes": DEMO_DATASET_BYTES, "mount_path": str(dataset_dir)}]
    return member


def isolation() -> str:
    """The demo sandboxes repositories (and so makes its dataset truly read-only) wherever bwrap exists."""
    return "bubblewrap" if shutil.which("bwrap") else "none"


def backend_settings(site: DemoSite) -> dict[str, Any]:
    """The ``[backend]`` table: local servers in a sandbox, offline installs, idle servers culled after 30 min."""
    index = next((i for i, s in enumerate(SITES) if s.member_id == site.member_id), len(SITES))
    return {
        "kind": "local",
        "isolation": isolation(),
        # Each member's launches get uids of their own (the members share one machine).
        "sandbox_uid_base": 61000 + 1000 * index,
        "capacity": site.capacity,
        "pip_args": ["--no-index"],
        "cull_idle_seconds": 1800.0,
        "cull_interval_seconds": 60.0,
        **site.extra,
    }


def member_toml(site: DemoSite, agent_url: str, port: int, dataset_dir: Path | None) -> str:
    """The whole ``member.toml``; ``[broker]`` stays empty until ``fedmember enroll`` fills it."""
    document = {
        "member": member_settings(site, agent_url, port, dataset_dir),
        "broker": {"url": "", "id": ""},
        "backend": backend_settings(site),
    }
    return HEADER + tomli_w.dumps(document)
