"""Routing: a pure ranking of members for one launch, from the snapshot, health and the request.

No I/O and no clock here: everything time-dependent arrives already computed in the
:class:`~fedbroker.health.HealthView`\\ s, so the same inputs always give the same decision.
The cost model (seconds-equivalent, lower is better) is documented in FEDERATION.md.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Mapping

from fedproto.datasets import Dataset, normalise_dataset_id
from fedproto.location import Location
from fedproto.member import MemberState
from fedproto.repospec import RepoSpec
from fedproto.routing import Candidate, RouteDecision

from . import rendezvous
from .config import RoutingSettings
from .health import HealthState, HealthView
from .snapshot import MemberEntry, RegistrySnapshot

GB = 1024**3


@dataclass(frozen=True)
class RouteRequest:
    """What routing knows about one launch."""

    repo: RepoSpec
    data: tuple[str, ...] = ()
    client_region: str | None = None
    client_location: Location | None = None

    def needed_datasets(self) -> list[str]:
        """The ``?data=`` values and, for data providers, the record itself; normalised, in order."""
        wanted = [normalise_dataset_id(d) for d in self.data]
        if self.repo.dataset_id:
            wanted.append(normalise_dataset_id(self.repo.dataset_id))
        return list(dict.fromkeys(wanted))


def new_decision_id() -> str:
    """A short random id for one decision (shown to users and in logs)."""
    return secrets.token_urlsafe(9)


def _stored(entry: MemberEntry, view: HealthView | None) -> list[Dataset]:
    ad_sets = list(view.ad.datasets) if view is not None and view.ad is not None else []
    return ad_sets + list(entry.record.datasets)


def _location(entry: MemberEntry, view: HealthView | None) -> Location:
    if view is not None and view.ad is not None and view.ad.location != Location():
        return view.ad.location
    return entry.record.location


def unroutable_reason(entry: MemberEntry, view: HealthView | None, provider: str | None) -> str | None:
    """Why this member cannot take the launch, or None when it can. Checked before any cost.

    ``provider`` None skips the provider check (for "could it take any launch", as /health asks).
    """
    state = entry.record.state
    if state is not MemberState.active:
        return f"{state.value}: takes no new launches"
    if entry.record.weight <= 0:
        return "weight 0: the admin set it to take no new launches"
    if view is None or view.ad is None:
        return "no status yet: never answered a poll"
    if view.ad_expired:
        return "expired ad: its last status ad has expired (member gone)"
    if view.state is not HealthState.healthy:
        return f"unhealthy: {view.last_error or 'failed its recent polls'}"
    if view.ejected:
        return "ejected: consecutive launch failures; back after a passing poll"
    if provider is not None and view.ad.providers and provider not in view.ad.providers:
        return f"provider not supported: {provider}"
    if view.free <= 0:
        return "no capacity: every slot is used or building"
    return None


def _dataset_sizes(snapshot: RegistrySnapshot, health: Mapping[str, HealthView], wanted: list[str]) -> dict[str, int]:
    """The largest size any member reports for each wanted dataset (exact ids only, not prefixes)."""
    sizes: dict[str, int] = {}
    for entry in snapshot.members.values():
        for ds in _stored(entry, health.get(entry.id)):
            if ds.prefix or ds.size_bytes is None:
                continue
            for w in wanted:
                if ds.matches(w):
                    sizes[w] = max(sizes.get(w, 0), ds.size_bytes)
    return sizes


def availability(snapshot: RegistrySnapshot, health: Mapping[str, HealthView]) -> dict[str, str | None]:
    """Every member's reason it cannot take launches now (None when it can), for any provider."""
    return {m: unroutable_reason(e, health.get(m), None) for m, e in sorted(snapshot.members.items())}


@dataclass(frozen=True)
class _Context:
    request: RouteRequest
    settings: RoutingSettings
    wanted: list[str]
    sizes: dict[str, int]
    neutral_ready: float


def _data_cost(stored: list[Dataset], ctx: _Context) -> float:
    cost = 0.0
    for w in ctx.wanted:
        if any(ds.matches(w) for ds in stored):
            continue
        size = ctx.sizes.get(w)
        s = ctx.settings
        cost += s.dataset_unknown_seconds if size is None else size / GB * s.dataset_transfer_seconds_per_gb
    return cost


def _region_cost(loc: Location, ctx: _Context) -> float:
    s, req = ctx.settings, ctx.request
    cost = 0.0
    if req.client_region and loc.region and loc.region.lower() != req.client_region.lower():
        cost += s.region_mismatch_seconds
    if req.client_location is not None:
        km = req.client_location.distance_km(loc)
        if km is not None:
            cost += km / 1000.0 * s.distance_seconds_per_1000km
    return cost


def cost_parts(entry: MemberEntry, view: HealthView, ctx: _Context) -> dict[str, float]:
    """The named parts of a routable member's cost."""
    s = ctx.settings
    assert view.ad is not None
    ready = view.ready_seconds if view.ready_seconds is not None else ctx.neutral_ready
    parts = {
        "data": _data_cost(_stored(entry, view), ctx),
        "image": 0.0 if view.ad.images.has(ctx.request.repo.key) else s.build_seconds,
        "load": (view.load or 0.0) * s.load_seconds,
        "reliability": (1.0 - view.success_rate) * s.failure_seconds,
        "ready_time": ready * s.ready_time_weight,
        "region": _region_cost(_location(entry, view), ctx),
        "weight": s.weight_seconds * (1.0 / entry.record.weight - 1.0),
        "suspect": s.suspect_seconds if view.last_poll_ok is False else 0.0,
    }
    return {k: round(v, 3) for k, v in parts.items()}


def _neutral_ready(views: list[HealthView]) -> float:
    known = [v.ready_seconds for v in views if v.ready_seconds is not None]
    return sum(known) / len(known) if known else 0.0


def rank(
    snapshot: RegistrySnapshot,
    health: Mapping[str, HealthView],
    request: RouteRequest,
    settings: RoutingSettings,
    *,
    decision_id: str,
) -> RouteDecision:
    """Rank every member in the snapshot for ``request``: routable by preference, then the rest with why."""
    costed: dict[str, tuple[float, dict[str, float]]] = {}
    blocked: list[tuple[str, str]] = []
    routable_views = []
    for entry in snapshot.members.values():
        why = unroutable_reason(entry, health.get(entry.id), request.repo.provider)
        if why is None:
            routable_views.append(health[entry.id])
        else:
            blocked.append((entry.id, why))
    wanted = request.needed_datasets()
    ctx = _Context(request, settings, wanted, _dataset_sizes(snapshot, health, wanted), _neutral_ready(routable_views))
    for view in routable_views:
        parts = cost_parts(snapshot.members[view.member_id], view, ctx)
        costed[view.member_id] = (round(sum(parts.values()), 3), parts)
    ordered, reasons = _order(snapshot, health, costed, request.repo.key, settings)
    candidates = [
        Candidate(member_id=m, rank=i + 1, routable=True, cost=costed[m][0], parts=costed[m][1], reason=reasons[m])
        for i, m in enumerate(ordered)
    ]
    for member_id, why in sorted(blocked):
        candidates.append(
            Candidate(member_id=member_id, rank=len(candidates) + 1, routable=False, cost=None, reason=why)
        )
    return RouteDecision(
        decision_id=decision_id,
        provider=request.repo.provider,
        spec=request.repo.spec,
        repo_key=request.repo.key,
        data=wanted,
        client_region=request.client_region,
        candidates=candidates,
    )


def _order(
    snapshot: RegistrySnapshot,
    health: Mapping[str, HealthView],
    costed: dict[str, tuple[float, dict[str, float]]],
    repo_key: str,
    s: RoutingSettings,
) -> tuple[list[str], dict[str, str]]:
    """Near-equal candidates by weighted rendezvous hash with bounded load; the rest by cost."""
    if not costed:
        return [], {}
    by_cost = sorted(costed, key=lambda m: (costed[m][0], m))
    best = costed[by_cost[0]][0]
    near = [m for m in by_cost if costed[m][0] <= best + s.near_equal]
    loads = {m: health[m].load or 0.0 for m in near}
    mean = sum(loads.values()) / len(near)
    spilled = {m for m in near if len(near) > 1 and mean > 0 and loads[m] > s.load_spill_factor * mean}
    sticky = rendezvous.order(repo_key, {m: snapshot.members[m].record.weight for m in near if m not in spilled})
    rest = sorted((m for m in costed if m not in sticky), key=lambda m: (costed[m][0], m))
    ordered = sticky + rest
    winner = ordered[0]
    reasons = {winner: _winner_reason(len(sticky), len(spilled), s)}
    for m in sticky[1:]:
        reasons[m] = f"near-equal cost; repo affinity (rendezvous hash) prefers {winner}"
    for m in rest:
        if m in spilled:
            reasons[m] = (
                f"spilled: load {loads[m]:.2f} is above {s.load_spill_factor:g}x the near-equal mean {mean:.2f}"
            )
        else:
            reasons[m] = _loser_reason(costed[m], costed[winner])
    return ordered, reasons


def _winner_reason(n_sticky: int, n_spilled: int, s: RoutingSettings) -> str:
    if n_sticky == 1 and n_spilled == 0:
        return "chosen: lowest cost"
    extra = f"; {n_spilled} busier member(s) spilled" if n_spilled else ""
    return f"chosen: {n_sticky} within {s.near_equal:g} s of the best cost; repo affinity (rendezvous hash) picks it{extra}"


def _loser_reason(mine: tuple[float, dict[str, float]], best: tuple[float, dict[str, float]]) -> str:
    worst = max(mine[1], key=lambda k: (mine[1][k] - best[1].get(k, 0.0), k))
    delta = mine[1][worst] - best[1].get(worst, 0.0)
    return f"cost {mine[0] - best[0]:.1f} s above the chosen member, mostly {worst} (+{delta:.1f} s)"
