"""A simulated member at run time: its slots, its image registry, and the random draws of its behaviour.

The member is the ground truth the router only sees through ads: whether a slot is free, whether
an image is built (or being built), how long a build and a session take, whether a launch fails.
Images are keyed by repo and ref (a new ref is a new build), while the published summary is per
repo key, as fedproto's ``ImageSummary`` is; an image built here stays here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from fedproto.datasets import normalise_dataset_id

from .ads import ImageLedger
from .federation import MemberSpec


@dataclass(frozen=True, slots=True)
class Start:
    """A launch that got a slot: when its image is ready and whether this launch built it."""

    ready_at: float
    built: bool
    waited_for_build: bool


class SimMember:
    """One member's state during a replay."""

    def __init__(self, spec: MemberSpec, index: int, rng: random.Random) -> None:
        self.spec = spec
        self.index = index
        self._rng = rng
        self.used = 0
        self.building = 0
        self.images: dict[tuple[str, str], float] = {}  # (repo key, ref) -> when its image is ready
        self.published = ImageLedger()  # what its ads list
        self.datasets = frozenset(normalise_dataset_id(d) for d in spec.datasets)
        self._session_mu = math.log(spec.session_median)
        self._build_mu = math.log(spec.build_median)

    @property
    def occupied(self) -> int:
        """Slots taken by running servers and by launches waiting for their build."""
        return self.used + self.building

    def has_room(self) -> bool:
        return self.used + self.building < self.spec.capacity

    def stores_all(self, datasets: tuple[str, ...]) -> bool:
        """Whether every dataset (already in fedproto's normal form) is stored here."""
        return all(d in self.datasets for d in datasets)

    def fails(self) -> bool:
        """Draw whether this launch fails at the member before ``ready`` (a 5xx, a timeout)."""
        return self._rng.random() < self.spec.failure_probability

    def session_seconds(self) -> float:
        return self._rng.lognormvariate(self._session_mu, self.spec.session_sigma)

    def start(self, repo_key: str, image: tuple[str, str], now: float) -> Start:
        """Take a slot for a launch at ``now``; build the image unless it is built or being built."""
        ready_at = self.images.get(image)
        if ready_at is None:
            ready_at = now + self._rng.lognormvariate(self._build_mu, self.spec.build_sigma)
            self.images[image] = ready_at
            self.published.built(repo_key, ready_at)
            start = Start(ready_at, built=True, waited_for_build=True)
        else:
            # Launches that arrive while the image builds wait for that build (BinderHub shares it).
            start = Start(max(ready_at, now), built=False, waited_for_build=ready_at > now)
        if start.waited_for_build:
            self.building += 1
        else:
            self.used += 1
        return start

    def build_finished(self) -> None:
        """A launch that waited for its build now runs its server."""
        self.building -= 1
        self.used += 1

    def session_ended(self) -> None:
        self.used -= 1
