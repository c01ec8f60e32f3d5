"""Routing: a pure ranking of members for one launch, from the snapshot, health and the request.

No I/O and no clock here: everything time-dependent arrives already computed in the
:class:`~fedbroker.health.HealthView`\\ s, so the same inputs always give the same decision.
The cost model (seconds-equivalent, lower is better) is documented in FEDERATION.md.
"""

from __future__ import annotations

import heapq
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

from fedproto.datasets import normalise_dataset_id
from fedproto.location import Location
from fedproto.repospec import RepoSpec
from fedproto.routing import Candidate, RouteDecision
from fedproto.status import image_hash

from ..config import RoutingSettings
from ..registry.snapshot import RegistrySnapshot
from . import rendezvous
from .facts import MemberFacts, MemberPool, RoutingMemo, unroutable_reason
from .health import HealthView

__all__ = ["RouteRequest", "RoutingMemo", "availability", "new_decision_id", "rank", "unroutable_reason"]

GB = 1024**3


@dataclass(frozen=True)
class RouteRequest:
    """What routing knows about one launch."""

    repo: RepoSpec
    data: tuple[str, ...] = ()
    client_region: str | None = None
    client_location: Location | None = None

    @cached_property
    def image(self) -> str:
        """The repo's image hash, as image summaries list it. Cached: a decision reads it for its
        pending builds, its pricing and its provisional load, and each is a SHA-256."""
        return image_hash(self.repo.key)

    def needed_datasets(self) -> list[str]:
        """The ``?data=`` values and, for data providers, the record itself; normalised, in order."""
        wanted = [normalise_dataset_id(d) for d in self.data]
        if self.repo.dataset_id:
            wanted.append(normalise_dataset_id(self.repo.dataset_id))
        return list(dict.fromkeys(wanted))


def new_decision_id() -> str:
    """A short random id for one decision (shown to users and in logs)."""
    return secrets.token_urlsafe(9)


def availability(snapshot: RegistrySnapshot, health: Mapping[str, HealthView]) -> dict[str, str | None]:
    """Every member's reason it cannot take launches now (None when it can), for any provider."""
    return {m: unroutable_reason(e, health.get(m), None) for m, e in sorted(snapshot.members.items())}


def _dataset_sizes(facts: list[MemberFacts], wanted: list[str]) -> dict[str, int]:
    """The largest size any member reports for each wanted dataset (exact ids only, not prefixes)."""
    sizes: dict[str, int] = {}
    for w in wanted:
        known = [size for f in facts if (size := f.exact.get(w)) is not None]
        if known:
            sizes[w] = max(known)
    return sizes


@dataclass(frozen=True)
class _Context:
    """One decision's request-dependent inputs, computed once for all members."""

    request: RouteRequest
    settings: RoutingSettings
    wanted: list[str]
    sizes: dict[str, int]
    neutral_ready: float  # the rounded ready-time part of a member without launches yet
    image: str  # the repo's image hash
    build: float  # the rounded image part of a member without the image
    fetch: dict[str, float]  # each wanted dataset's cost at a member that does not store it
    client_region: str | None  # lower-cased
    mismatch: float  # the rounded region part of a member in another region (no coordinates)
    # Members this repo's image was just sent to (provisional: building there, not yet in their ad).
    pending: frozenset[str] = frozenset()


def has_image(f: MemberFacts, ctx: _Context) -> bool:
    """Whether the member's image summary lists the repo, or a launch of it was just sent there."""
    return ctx.image in f.images or (bool(ctx.pending) and f.id in ctx.pending)


def _data_cost(f: MemberFacts, ctx: _Context) -> float:
    cost = 0.0
    for w in ctx.wanted:
        if not f.stores(w):
            cost += ctx.fetch[w]
    return cost


def _region_cost(f: MemberFacts, ctx: _Context) -> float:
    s, req = ctx.settings, ctx.request
    cost = 0.0
    if ctx.client_region and f.region and f.region != ctx.client_region:
        cost += s.region_mismatch_seconds
    if req.client_location is not None:
        km = req.client_location.distance_km(f.location)
        if km is not None:
            cost += km / 1000.0 * s.distance_seconds_per_1000km
    return cost


def _region_part(f: MemberFacts, ctx: _Context) -> float:
    if ctx.request.client_location is not None:
        return round(_region_cost(f, ctx), 3)
    return ctx.mismatch if ctx.client_region and f.region and f.region != ctx.client_region else 0.0


PART_NAMES = ("data", "image", "load", "reliability", "ready_time", "region", "weight", "suspect")


def cost_parts(f: MemberFacts, ctx: _Context) -> dict[str, float]:
    """The named, rounded parts of a routable member's cost (what an explanation shows)."""
    return dict(zip(PART_NAMES, (
        round(_data_cost(f, ctx), 3) if ctx.wanted else 0.0,
        0.0 if has_image(f, ctx) else ctx.build,
        f.load,
        f.reliability,
        f.ready if f.ready_seconds is not None else ctx.neutral_ready,
        _region_part(f, ctx),
        f.weight,
        f.suspect,
    )))


def _total(f: MemberFacts, ctx: _Context, data: float = 0.0) -> float:
    """``round(sum(cost_parts(f, ctx).values()), 3)``, bit for bit (same parts, same order), without
    building the dict: this runs for every routable member on every launch. A test holds them equal."""
    return round(
        round(data, 3)
        + (0.0 if has_image(f, ctx) else ctx.build)
        + f.load + f.reliability
        + (f.ready if f.ready_seconds is not None else ctx.neutral_ready)
        + (_region_part(f, ctx) if ctx.client_region or ctx.request.client_location is not None else 0.0)
        + f.weight + f.suspect,
        3,
    )


def _totals(pool: MemberPool, ctx: _Context, data: dict[str, float]) -> dict[str, float]:
    """Every routable member's total cost. Without needed datasets or client coordinates it is
    one of four numbers priced once per pool (image cached or not, region matches or not), so a
    launch costs a lookup per member instead of a sum: at 1,000 members that halved a decision."""
    if ctx.wanted or ctx.request.client_location is not None or ctx.pending:
        return {f.id: _total(f, ctx, data.get(f.id, 0.0)) for f in pool.routable}
    image, region = ctx.image, ctx.client_region
    if region is None:
        return {f.id: p[0 if image in f.images else 2] for f, p in pool.priced}
    return {f.id: p[(0 if image in f.images else 2) + (1 if f.region and f.region != region else 0)]
            for f, p in pool.priced}


def _context(request: RouteRequest, settings: RoutingSettings, pool: MemberPool,
             pending: frozenset[str] = frozenset()) -> _Context:
    wanted = request.needed_datasets()
    return make_context(request, settings, wanted, _dataset_sizes(pool.facts, wanted), pool.neutral_ready, pending)


def make_context(request: RouteRequest, settings: RoutingSettings, wanted: list[str], sizes: dict[str, int],
                 neutral_ready: float, pending: frozenset[str] = frozenset()) -> _Context:
    """One decision's request-dependent inputs (the index passes the sizes and neutral part it keeps)."""
    fetch = {w: settings.dataset_unknown_seconds if w not in sizes
             else sizes[w] / GB * settings.dataset_transfer_seconds_per_gb for w in wanted}
    return _Context(
        request=request, settings=settings, wanted=wanted, sizes=sizes, fetch=fetch,
        neutral_ready=neutral_ready, image=request.image, build=round(settings.build_seconds, 3),
        client_region=request.client_region.lower() if request.client_region else None,
        mismatch=round(settings.region_mismatch_seconds, 3), pending=pending,
    )


def rank(
    snapshot: RegistrySnapshot,
    health: Mapping[str, HealthView],
    request: RouteRequest,
    settings: RoutingSettings,
    *,
    decision_id: str,
    memo: RoutingMemo | None = None,
    detail: int | None = None,
    pending: frozenset[str] = frozenset(),
) -> RouteDecision:
    """Rank every member in the snapshot for ``request``: routable by preference, then the rest with why.

    ``memo`` only saves work across calls (see :class:`RoutingMemo`); the decision is the same
    without it, provided ``snapshot`` and ``health`` are not mutated after being passed in.
    ``detail`` (for real launches) lists only the best ``detail`` routable candidates, and the
    unroutable ones only when none is routable: what failover and the refusal message use. Materialising and explaining all 1,000 candidates of a large federation on every launch
    cost several milliseconds; dry runs (``detail=None``) still explain every member.
    ``pending``: members this repo was just sent to, priced as holding its image (see ``RoutingIndex``).
    """
    memo = memo or RoutingMemo()
    pool = memo.pool(snapshot, health, settings, request.repo.provider)
    pool = pool.for_repo(request.repo.key)  # members whose ad lists what they serve, and not this repo
    # The data providers' policies: a launch needing a dataset with one goes only where it allows.
    limit = snapshot.datasets.serving(request.needed_datasets()) if request.data or request.repo.dataset_id else None
    if limit is not None:
        pool = pool.restricted(limit.allowed, limit.reason)
    # A client location is a pydantic model (not hashable) and rarely repeats: not remembered.
    key = (request.repo, request.data, request.client_region, detail, pending) if request.client_location is None else None
    known = memo.decision(key) if key is not None else None
    if known is not None:
        return known.model_copy(update={"decision_id": decision_id})
    decision = _rank(pool, request, settings, decision_id, detail, pending)
    if key is not None:
        memo.remember(key, decision)
    return decision


def _rank(pool: MemberPool, request: RouteRequest, settings: RoutingSettings, decision_id: str,
          detail: int | None, pending: frozenset[str] = frozenset()) -> RouteDecision:
    ctx = _context(request, settings, pool, pending)
    by_id = pool.by_id
    # Each routable member's data part, priced once: both its total and the data tier need it.
    data = {f.id: _data_cost(f, ctx) for f in pool.routable} if ctx.wanted else {}
    totals = _totals(pool, ctx, data)
    local = _least_data(data, ctx)
    new_repo = not ctx.pending and not pool.holds_anywhere(ctx.image)  # see facts.is_hot
    ordered, spilled = _order(by_id, totals, local, pool.hot_new if new_repo else pool.hot, request.repo.key,
                              settings, detail)
    reasons = _reasons(ordered, spilled, by_id, totals, local, ctx)
    # trusted (no validation): every value below was computed here from validated inputs, and
    # validating the candidates again cost more than ranking them.
    candidates = [
        Candidate.trusted(member_id=m, rank=i + 1, routable=True, cost=totals[m],
                          parts=cost_parts(by_id[m], ctx), reason=reasons[m])
        for i, m in enumerate(ordered)
    ]
    if detail is None or not pool.routable:
        for member_id, why in pool.blocked:
            candidates.append(Candidate.trusted(member_id=member_id, rank=len(candidates) + 1,
                                                routable=False, cost=None, parts={}, reason=why))
    return RouteDecision.trusted(
        decision_id=decision_id, provider=request.repo.provider, spec=request.repo.spec, repo_key=request.repo.key,
        data=ctx.wanted, client_region=request.client_region, candidates=candidates,
    )


def _least_data(data: dict[str, float], ctx: _Context) -> frozenset[str] | None:
    """The members with the least data to fetch for this launch; None (every member) when it needs none."""
    if not ctx.wanted:
        return None
    least = min(data.values(), default=0.0)
    return frozenset(m for m, d in data.items() if d <= least)


@dataclass(frozen=True)
class _Spill:
    """Which members spilled for load (ratio of their weight's share of sessions), and how many near-equal
    members of the first tier the rendezvous hash ordered."""

    members: dict[str, float]
    sticky: int


def _smallest(pairs: list[tuple[float, str]], limit: int | None) -> list[str]:
    # A real launch needs only the best few (``detail``): a partial heap beats sorting 1,000s.
    chosen = sorted(pairs) if limit is None else heapq.nsmallest(limit, pairs)
    return [m for _, m in chosen]


def _tier(
    members: list[str], by_id: dict[str, MemberFacts], totals: dict[str, float], hot: dict[str, float],
    repo_key: str, s: RoutingSettings, limit: int | None = None,
) -> tuple[list[str], list[str]]:
    """One tier's (sticky, rest): the near-equal cool members by rendezvous hash, then the other cool
    ones by cost, then the hot ones by cost; with ``limit``, only the first ``limit`` of them."""
    cool = [m for m in members if m not in hot]
    hot_pairs = [(totals[m], m) for m in members if m in hot]
    if not cool:
        return [], _smallest(hot_pairs, limit)
    best = min(totals[m] for m in cool)
    band = [(totals[m], m) for m in cool if totals[m] <= best + s.near_equal]
    if len(band) > s.near_equal_max:  # only the cheapest few: see RoutingSettings.near_equal_max
        band = heapq.nsmallest(s.near_equal_max, band)
    near = {m: by_id[m].entry.record.weight for _, m in band}
    sticky = rendezvous.order(repo_key, near)
    left = None if limit is None else max(0, limit - len(sticky))
    rest = _smallest([(totals[m], m) for m in cool if m not in near], left)
    left = None if left is None else max(0, left - len(rest))
    return sticky, rest + (_smallest(hot_pairs, left) if left != 0 else [])


def _order(
    by_id: dict[str, MemberFacts], totals: dict[str, float], local: frozenset[str] | None, hot: dict[str, float],
    repo_key: str, s: RoutingSettings, detail: int | None,
) -> tuple[list[str], _Spill]:
    """Members with the least data to fetch first, then the others. Within each tier, members running
    above ``load_spill_factor`` times their weight's share of sessions go last (no hot member), near-equal
    ones by weighted rendezvous hash on the repo (sticky), the rest by cost.

    Data locality is a tier rather than a price so that no load or image difference sends a launch
    away from its dataset while a member storing it is routable. Suspect members (last poll failed,
    not yet unhealthy by hysteresis) come after every other member, data or not: a member seen
    failing must not get the launch while another can take it. With ``detail``, only that many
    are returned.
    """
    if not totals:
        return [], _Spill({}, 0)
    suspect = {m for m in totals if by_id[m].suspect > 0}
    if local is None:  # no data needed: one tier, and the suspect members after it
        tiers = [[m for m in totals if m not in suspect], [m for m in totals if m in suspect]] if suspect else [list(totals)]
    else:
        tiers = [[m for m in totals if m in local and m not in suspect],
                 [m for m in totals if m not in local and m not in suspect],
                 [m for m in totals if m in local and m in suspect], [m for m in totals if m not in local and m in suspect]]
    ordered: list[str] = []
    first_sticky = 0
    for i, tier in enumerate(t for t in tiers if t):
        limit = None if detail is None else detail - len(ordered)
        sticky, rest = _tier(tier, by_id, totals, hot, repo_key, s, limit)
        first_sticky = len(sticky) if i == 0 else first_sticky
        ordered += sticky + rest
        if detail is not None and len(ordered) >= detail:
            break
    spilled = {m: hot[m] for m in totals if m in hot}
    return (ordered if detail is None else ordered[:detail]), _Spill(spilled, first_sticky)


def _reasons(ordered: list[str], spill: _Spill, by_id: dict[str, MemberFacts], totals: dict[str, float],
             local: frozenset[str] | None, ctx: _Context) -> dict[str, str]:
    """Why each listed member won or lost."""
    if not ordered:
        return {}
    s = ctx.settings
    winner = ordered[0]
    best = (totals[winner], cost_parts(by_id[winner], ctx))
    reasons = {winner: _winner_reason(max(1, spill.sticky), len(spill.members), s)}
    for i, m in enumerate(ordered[1:], start=1):
        if m in spill.members:
            why = (f"spilled: runs {spill.members[m]:.2f}x its weight's share of sessions "
                   f"(limit {s.load_spill_factor:g}x)")
        elif i < spill.sticky:
            why = f"near-equal cost; repo affinity (rendezvous hash) prefers {winner}"
        else:
            why = _loser_reason((totals[m], cost_parts(by_id[m], ctx)), best)
        reasons[m] = why if local is None or m in local else f"does not store the data; {why}"
    return reasons


def _winner_reason(n_sticky: int, n_spilled: int, s: RoutingSettings) -> str:
    extra = f"; {n_spilled} busier member(s) spilled" if n_spilled else ""
    if n_sticky == 1:
        return f"chosen: lowest cost{extra}"
    band = "at the best cost" if s.near_equal == 0 else f"within {s.near_equal:g} s of the best cost"
    return f"chosen: {n_sticky} members {band}; repo affinity (rendezvous hash) picks it{extra}"


def _loser_reason(mine: tuple[float, dict[str, float]], best: tuple[float, dict[str, float]]) -> str:
    worst = max(mine[1], key=lambda k: (mine[1][k] - best[1].get(k, 0.0), k))
    delta = mine[1][worst] - best[1].get(worst, 0.0)
    return f"cost {mine[0] - best[0]:.1f} s above the chosen member, mostly {worst} (+{delta:.1f} s)"
