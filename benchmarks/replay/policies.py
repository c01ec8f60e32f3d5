"""Routing policies under replay: mybinder.org's two (weighted random, weighted rendezvous), bounded-load
rendezvous, and the broker's router.

Every policy sees members only through what they publish (the delayed ads) and what it sent
them, and answers with the members to try, in order. The baselines behave as mybinder.org's
federation-redirect does: a member whose last ad shows no free slot counts as unhealthy (its
quota check) and is skipped; otherwise the choice ignores load and images. The router calls
:func:`fedbroker.routing.rank` itself, with the broker's own :class:`~fedbroker.routing.health.HealthTable`
fed by the ads and by launch outcomes, so it is the broker's code that decides.
"""

from __future__ import annotations

import random
from types import MappingProxyType
from typing import Protocol, Sequence

from fedbroker.routing import rendezvous
from fedbroker.config import HealthSettings, RoutingSettings
from fedbroker.routing.health import HealthTable
from fedbroker.registry.snapshot import SnapshotHolder
from fedbroker.routing.live import LiveRouter
from fedbroker.routing.rank import RoutingMemo, rank
from fedbroker.registry.snapshot import MemberEntry, RegistrySnapshot
from fedproto.keys import PublicKeySet
from fedproto.location import Location
from fedproto.member import MemberRecord, MemberState

from .ads import AdFactory, ImageLedger, record_datasets
from .federation import MemberSpec
from .targets import Target


class SimulatedClock:
    """The replay's clock: the simulated time of the event being handled."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time


class Policy(Protocol):
    """What the replay asks of a policy. Members are indices into the federation."""

    name: str

    def published(self, member: int, now: float, used: int, building: int, images: ImageLedger) -> None:
        """The member's ad issued at ``now`` reached the policy."""

    def choose(self, target: Target, now: float) -> Sequence[int]:
        """Members to try for this launch, best first."""

    def sent(self, member: int) -> None:
        """A launch was sent to ``member``."""

    def finished(self, member: int, ok: bool, ready_seconds: float) -> None:
        """The launch sent to ``member`` reached ``ready`` (ok) or failed at the member."""


class _QuotaAware:
    """What both baselines share: weights, and each member's last advertised free-slot state."""

    def __init__(self, members: Sequence[MemberSpec]) -> None:
        self._ids = [m.id for m in members]
        self._weights = [m.weight for m in members]
        self._capacity = [m.capacity for m in members]
        self._has_room = [True] * len(members)

    def published(self, member: int, now: float, used: int, building: int, images: ImageLedger) -> None:
        self._has_room[member] = used + building < self._capacity[member]

    def sent(self, member: int) -> None:
        pass

    def finished(self, member: int, ok: bool, ready_seconds: float) -> None:
        pass


class WeightedRandom(_QuotaAware):
    """A random member, in proportion to weight, among those with room; then the others the same way."""

    name = "random"

    def __init__(self, members: Sequence[MemberSpec], rng: random.Random) -> None:
        super().__init__(members)
        self._rng = rng

    def choose(self, target: Target, now: float) -> Sequence[int]:
        # Efraimidis-Spirakis: sorting by u ** (1 / w) is weighted sampling without replacement.
        keyed = [
            (self._rng.random() ** (1.0 / w), m)
            for m, w in enumerate(self._weights)
            if w > 0 and self._has_room[m]
        ]
        return [m for _, m in sorted(keyed, reverse=True)]


class Rendezvous(_QuotaAware):
    """Weighted rendezvous hashing on the repo without its ref, skipping members without room."""

    name = "rendezvous"

    def __init__(self, members: Sequence[MemberSpec]) -> None:
        super().__init__(members)
        self._index = {m: i for i, m in enumerate(self._ids)}
        self._orders: dict[str, list[int]] = {}

    def choose(self, target: Target, now: float) -> Sequence[int]:
        order = self._orders.get(target.repo_key)
        if order is None:
            weights = {m: w for m, w in zip(self._ids, self._weights) if w > 0}
            order = self._orders[target.repo_key] = [self._index[m] for m in rendezvous.order(target.repo_key, weights)]
        return [m for m in order if self._has_room[m]]


class BoundedRendezvous(_QuotaAware):
    """Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018) over weighted rendezvous:
    the repo's rendezvous order, skipping members already above ``c`` times their weight's share of the
    sessions (as the last ads report them, plus launches sent since); those follow, in the same order."""

    name = "bounded"

    def __init__(self, members: Sequence[MemberSpec], c: float = 1.25) -> None:
        super().__init__(members)
        self._c = c
        self._order = Rendezvous(members)
        self._occupied = [0] * len(members)
        self._share = [w / sum(self._weights) for w in self._weights]

    def published(self, member: int, now: float, used: int, building: int, images: ImageLedger) -> None:
        super().published(member, now, used, building, images)
        self._occupied[member] = used + building

    def sent(self, member: int) -> None:
        self._occupied[member] += 1

    def choose(self, target: Target, now: float) -> Sequence[int]:
        order = self._order.choose(target, now)
        total = sum(self._occupied) + 1
        fits = [m for m in order if self._occupied[m] + 1 <= self._c * self._share[m] * total]
        return fits + [m for m in order if m not in fits]


def registry_snapshot(members: Sequence[MemberSpec]) -> RegistrySnapshot:
    """The registry as the broker would hold it: every member active, with its weight, place and datasets."""
    entries = {}
    for m in members:
        record = MemberRecord(
            id=m.id,
            display_name=m.id,
            agent_url=f"https://{m.id}.agent.invalid",
            public_url=f"https://{m.id}.invalid",
            state=MemberState.active,
            weight=m.weight,
            location=Location(lat=m.lat, lon=m.lon, region=m.region or None),
            datasets=record_datasets(m),
            jwks={"keys": []},
            created_at=0.0,
            updated_at=0.0,
        )
        entries[m.id] = MemberEntry(record=record, keys=PublicKeySet([]))
    return RegistrySnapshot(revision=1, members=MappingProxyType(entries))


class RankRouter:
    """The router as it decided before the routing index: :func:`fedbroker.routing.rank.rank` over the
    snapshot and the broker's health table, every routable member priced per launch, no pending images.
    Kept to show what the index and pending images change (same choices without pending images)."""

    name = "rank"

    def __init__(
        self,
        members: Sequence[MemberSpec],
        settings: RoutingSettings,
        clock: SimulatedClock,
        poll_interval: float,
        max_attempts: int,
    ) -> None:
        self._ids = [m.id for m in members]
        self._detail = max_attempts  # the broker asks for the candidates failover may try
        self._index = {m: i for i, m in enumerate(self._ids)}
        self._snapshot = registry_snapshot(members)
        self._settings = settings
        self._clock = clock
        self._health = HealthTable(HealthSettings(interval=poll_interval), clock, random.Random(0))
        self._health.sync(self._ids)
        self._ads = [AdFactory(m, poll_interval) for m in members]
        self._memo = RoutingMemo()  # as the broker's dispatcher kept one

    def published(self, member: int, now: float, used: int, building: int, images: ImageLedger) -> None:
        ad = self._ads[member].ad(now, used, building, images)
        self._health.member(self._ids[member]).record_poll(ad)

    def choose(self, target: Target, now: float) -> Sequence[int]:
        decision = rank(
            self._snapshot, self._health.views(), target.request, self._settings, decision_id="replay", memo=self._memo,
            detail=self._detail,
        )
        return [self._index[c.member_id] for c in decision.candidates if c.routable]

    def sent(self, member: int) -> None:
        self._health.member(self._ids[member]).record_launch_started()

    def finished(self, member: int, ok: bool, ready_seconds: float) -> None:
        health = self._health.member(self._ids[member])
        if ok:
            health.record_launch_success(ready_seconds)
        else:
            health.record_launch_failure()


class Router(RankRouter):
    """The broker's router as its dispatcher runs it: :class:`fedbroker.routing.live.LiveRouter` (the
    routing index, provisional load and pending images) over the snapshot and the health table."""

    name = "router"

    def __init__(self, members: Sequence[MemberSpec], settings: RoutingSettings, clock: SimulatedClock,
                 poll_interval: float, max_attempts: int) -> None:
        super().__init__(members, settings, clock, poll_interval, max_attempts)
        self.live = LiveRouter(settings, SnapshotHolder(self._snapshot), self._health, clock)
        self._target: Target | None = None

    def choose(self, target: Target, now: float) -> Sequence[int]:
        self._target = target
        decision = self.live.decide(target.request, "replay", self._detail)
        return [self._index[c.member_id] for c in decision.candidates if c.routable]

    def sent(self, member: int) -> None:
        # Every attempt counts, as in the broker (the decision counts its chosen member, the relay the
        # others); a member that does not list the image gets it as pending.
        assert self._target is not None
        self.live.launched(self._ids[member], self._target.request)


POLICY_NAMES = ("random", "rendezvous", "bounded", "router")
EXTRA_POLICIES = ("rank",)  # run only when named



def make_policy(
    name: str,
    members: Sequence[MemberSpec],
    clock: SimulatedClock,
    *,
    seed: int,
    routing: RoutingSettings,
    poll_interval: float,
    max_attempts: int,
) -> Policy:
    """The policy called ``name`` for this federation."""
    if name == "random":
        return WeightedRandom(members, random.Random(seed))
    if name == "rendezvous":
        return Rendezvous(members)
    if name == "bounded":
        return BoundedRendezvous(members)
    if name == "router":
        return Router(members, routing, clock, poll_interval, max_attempts)
    if name == "rank":
        return RankRouter(members, routing, clock, poll_interval, max_attempts)
    raise KeyError(f"unknown policy {name!r}; one of {', '.join(POLICY_NAMES)}")
