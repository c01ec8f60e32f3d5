"""A synthetic federation for benchmarks: N members with realistic records, status ads and health.

Sizes follow what a mybinder-style member reports: a few hundred cached images (drawn from a
shared pool of popular repos, so the same repo is cached at many members, as in real life),
a handful of datasets (exact DOIs and some prefixes) and a location. Everything is seeded, so
two runs measure the same federation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import MappingProxyType

from fedproto.clock import Clock
from fedproto.datasets import Dataset
from fedproto.keys import KeyRing, PrivateKey
from fedproto.location import Location
from fedproto.member import MemberRecord, MemberState
from fedproto.status import Capacity, ImageSummary, RedirectTarget, StatusAd, image_hash

from fedbroker.config import HealthSettings
from fedbroker.routing.health import HealthTable
from fedbroker.registry.snapshot import MemberEntry, RegistrySnapshot

REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-east")
POPULAR_REPOS = 20_000
IMAGES_PER_MEMBER = 400
DATASETS_PER_MEMBER = 12


def member_id(i: int) -> str:
    return f"m{i:05d}"


@dataclass
class Fleet:
    """The members (one shared key: signing cost is measured elsewhere), their ads and a health table."""

    keyring: KeyRing
    snapshot: RegistrySnapshot
    ads: dict[str, StatusAd]
    health: HealthTable


def _datasets(rng: random.Random, i: int) -> list[Dataset]:
    sets = [Dataset(id=f"10.5281/zenodo.{rng.randrange(10_000_000)}", size_bytes=rng.randrange(1, 500) * 2**30)
            for _ in range(DATASETS_PER_MEMBER - 2)]
    sets.append(Dataset(id=f"s3://site-{i}/", prefix=True))
    sets.append(Dataset(id=f"https://data.site-{i}.example.org/", prefix=True))
    return sets


def _location(rng: random.Random) -> Location:
    return Location(lat=rng.uniform(-60, 70), lon=rng.uniform(-180, 180), region=rng.choice(REGIONS))


def record(i: int, keyring: KeyRing, agent_url: str, rng: random.Random) -> MemberRecord:
    """A registered, active member ``i`` whose agent answers at ``agent_url``."""
    mid = member_id(i)
    return MemberRecord(
        id=mid, display_name=f"Member {i}", agent_url=agent_url, public_url=f"https://{mid}.example.org/",
        state=MemberState.active, weight=rng.choice((1.0, 1.0, 1.0, 2.0)), location=_location(rng),
        jwks=keyring.public_set().to_jwks(), created_at=0.0, updated_at=0.0,
    )


def status_ad(record: MemberRecord, now: float, rng: random.Random, pool: list[str], ttl: float = 600.0) -> StatusAd:
    """A healthy ad for ``record`` with its datasets, images and some load."""
    total = rng.choice((20, 50, 100, 400))
    images = sorted(set(rng.sample(pool, IMAGES_PER_MEMBER)))
    # Two in three members front a BinderHub a redirected browser is sent to; the rest are
    # agent-backed and take a signed ticket (from the index, so the rng's sequence is unchanged).
    redirect = (RedirectTarget(kind="ticket") if int(record.id[1:]) % 3 == 2
                else RedirectTarget(kind="binderhub", url=f"https://{record.id}.hub.example.org"))
    return StatusAd(
        member_id=record.id, instance_id="bench", generation=1, issued_at=now, expires_at=now + ttl, healthy=True,
        capacity=Capacity(total=total, used=rng.randrange(total // 2), building=rng.randrange(3)),
        backend="bench", providers=["gh", "gl", "git", "zenodo"], datasets=_datasets(rng, int(record.id[1:])),
        location=record.location, images=ImageSummary(hashes=images, total=len(images)), redirect=redirect,
    )


def repo_pool(n: int = POPULAR_REPOS) -> list[str]:
    """Image hashes of the popular repos ``gh:org{k}/repo{k}``."""
    return [image_hash(f"gh:org{k}/repo{k}") for k in range(n)]


def build(n: int, clock: Clock, *, seed: int = 1, agent_url: str = "http://127.0.0.1:1/{id}") -> Fleet:
    """A fleet of ``n`` active members, each with one passing poll recorded (healthy)."""
    rng = random.Random(seed)
    keyring = KeyRing([PrivateKey.generate()])
    pool = repo_pool()
    entries, ads = {}, {}
    keys = keyring.public_set()
    for i in range(n):
        rec = record(i, keyring, agent_url.format(id=member_id(i)), rng)
        entries[rec.id] = MemberEntry(record=rec, keys=keys)
        ads[rec.id] = status_ad(rec, clock.now(), rng, pool)
    snapshot = RegistrySnapshot(revision=1, members=MappingProxyType(entries))
    health = HealthTable(HealthSettings(), clock, random.Random(seed))
    health.sync(entries)
    for mid, ad in ads.items():
        health.member(mid).record_poll(ad)
    return Fleet(keyring=keyring, snapshot=snapshot, ads=ads, health=health)
