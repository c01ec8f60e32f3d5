"""The status ads simulated members publish: fedproto ``StatusAd`` objects, built cheaply and late.

The router must see what the broker would see: a member's load and image summary as of its
last poll, not as of now. An ad here is a real :class:`~fedproto.status.StatusAd` (so the
router reads it through its real code), built with ``model_construct`` because the values are
ours and validating ~2 million ads per run would dominate the replay's time.

The image summary lists real hashes (``ImageSummary.hashes``), as of the ad's issue time: an
image is listed once its build finished before the ad was issued. An :class:`ImageLedger`
grows one list per member as builds finish and every ad shares the list current when it was
issued (a new list only when something was added), because copying tens of thousands of
hashes into every ad every 10 s of simulated time would dominate the replay.
:class:`PublishedImages` also answers ``has()`` from a dict rather than by scanning the list.
The 20,000-hash cap of a real summary is not modelled (no member here reaches it below about
600,000 distinct repos).
"""

from __future__ import annotations

import heapq
import math
from typing import Mapping

from pydantic import PrivateAttr

from fedproto.datasets import Dataset
from fedproto.location import Location
from fedproto.status import Capacity, ImageSummary, StatusAd, image_hash

from .federation import MemberSpec

AD_LIFETIME_INTERVALS = 6.0  # an ad stays valid for this many poll intervals


class ImageLedger:
    """A member's published images: when each repo key's first image was ready, and the hash list."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}  # repo key -> when its first image was ready
        self._pending: list[tuple[float, str]] = []
        self._listed: list[str] = []

    def __len__(self) -> int:
        return len(self.ready)

    def built(self, repo_key: str, ready_at: float) -> None:
        """An image of ``repo_key`` will be ready at ``ready_at`` (its build just started)."""
        # Only the repo's first image counts: the summary is per repo key, not per ref.
        if repo_key not in self.ready:
            heapq.heappush(self._pending, (ready_at, repo_key))
            self.ready[repo_key] = ready_at

    def hashes_as_of(self, now: float) -> list[str]:
        """The summary's hashes at ``now``. Call with non-decreasing ``now``; never mutate the result."""
        fresh = []
        while self._pending and self._pending[0][0] <= now:
            fresh.append(image_hash(heapq.heappop(self._pending)[1]))
        if fresh:
            # A new list, so the ads already issued keep the one they were issued with.
            self._listed = self._listed + fresh
        return self._listed


class PublishedImages(ImageSummary):
    """An image summary as published at ``as_of``: real hashes, and an O(1) ``has``."""

    _ready: Mapping[str, float] = PrivateAttr(default_factory=dict)
    _as_of: float = PrivateAttr(default=0.0)

    @classmethod
    def of(cls, ledger: ImageLedger, moment: float) -> PublishedImages:  # type: ignore[override]
        """The summary of ``ledger`` at ``moment``."""
        hashes = ledger.hashes_as_of(moment)
        summary = cls.model_construct(hashes=hashes, total=len(hashes))
        summary._ready = ledger.ready
        summary._as_of = moment
        return summary

    def has(self, repo_key: str) -> bool:
        # Read the private dict directly: pydantic's __getattr__ fallback is the slow path.
        private = self.__pydantic_private__
        assert private is not None
        return private["_ready"].get(repo_key, math.inf) <= private["_as_of"]


class AdFactory:
    """Makes one member's successive ads; the parts that never change are built once."""

    def __init__(self, spec: MemberSpec, interval: float) -> None:
        self._spec = spec
        self._lifetime = interval * AD_LIFETIME_INTERVALS
        self._location = Location(lat=spec.lat, lon=spec.lon, region=spec.region or None)
        self._generation = 0
        # Consecutive ads mostly repeat the last capacity and image list; reusing those parts
        # (immutable, so sharing is safe) halves the cost of ~2 million ads per replay.
        self._capacities: dict[tuple[int, int], Capacity] = {}
        self._images: PublishedImages | None = None

    def ad(self, now: float, used: int, building: int, images: ImageLedger) -> StatusAd:
        """The ad issued at ``now`` for a member in this state."""
        self._generation += 1
        capacity = self._capacities.get((used, building))
        if capacity is None:
            capacity = self._capacities[used, building] = Capacity.model_construct(
                total=self._spec.capacity, used=used, building=building
            )
        summary = self._images
        if summary is None or summary.hashes is not images.hashes_as_of(now):
            # The list only changes when a build finished, and so does the answer of has().
            summary = self._images = PublishedImages.of(images, now)
        return StatusAd.model_construct(
            member_id=self._spec.id,
            instance_id="replay",
            generation=self._generation,
            issued_at=now,
            expires_at=now + self._lifetime,
            healthy=True,
            checks=[],
            capacity=capacity,
            versions={},
            providers=[],
            backend="replay",
            public_url=None,
            datasets=[],
            location=self._location,
            images=summary,
        )


def record_datasets(spec: MemberSpec) -> list[Dataset]:
    """The member's stored datasets as its registry record lists them."""
    return [Dataset(id=d) for d in spec.datasets]
