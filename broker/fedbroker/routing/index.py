"""The routing index: per-member routing facts kept up to date one member at a time, and decisions
that look only at the members that can win.

:func:`fedbroker.routing.rank.rank` prices every routable member for every launch; at 1,000 members
that is milliseconds, and each poll result made the next decision rebuild the whole pool. The
index instead keeps, incrementally (a poll result, a launch outcome, provisional load or a
registry change touches only that member's entries):

* the routable members that are neither hot nor suspect, sorted by their *base* cost (the
  request-independent parts: load, reliability, ready time, weight);
* which members list each image hash, and which store each dataset (exact ids and prefixes);
* the members running above their weight's share of sessions (hot), found from a sorted
  threshold rather than by pricing everyone;
* where each repo was just sent (*pending* images, see :class:`PendingImages`).

A real launch then prices only: the members storing its data, those holding its image (when
few do), the hot and suspect ones, and members in base order until no unseen member can enter
the best ``detail`` (every unseen member costs at least its base plus what it lacks). That is a
few dozen members whatever the federation's size, and the decision is the one
:func:`~fedbroker.routing.rank.rank` would make (``tests/broker/test_routing_index.py`` holds them
equal, candidate by candidate, over replayed traces). Explanations (every member's cost parts,
for dry runs and ``--explain``) go through ``rank`` on the index's facts.

Pure, like routing: no I/O and no clock (callers pass ``now``).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from fedproto.routing import Candidate, RouteDecision

from ..config import RoutingSettings
from ..registry.snapshot import MemberEntry, RegistrySnapshot
from .facts import MemberFacts, MemberPool, counts_in_share
from .health import HealthView
from .rank import RouteRequest, _Context, _data_cost, _least_data, _order, _rank, _total, make_context

__all__ = ["PendingImages", "RoutingIndex"]

# An image summary listing a repo at more members than this is not enumerated per launch: the
# base-order scan meets such holders early anyway, and enumerating the demo repo's 1,000 holders
# would make the common case linear again.
_HOLDER_LIMIT = 48
_FIRST_BATCH = 24
_TOLERANCE = 0.002  # totals are rounded to 3 decimals; lower bounds stay this far below


class PendingImages:
    """Where each repo was just sent, until the member's image summary can list it.

    A launch of a repo a member does not hold starts a build there, and the member's ad lists the
    image only once the build finished; without this, every launch of a new repo during its build
    (a class, a workshop, a repo shared on social media) looked uncached everywhere and spread
    builds over the federation. An entry lasts ``pending_image_seconds``.
    """

    MAX_REPOS = 100_000  # bounds memory; the oldest entries go first

    def __init__(self) -> None:
        self._until: dict[str, dict[str, float]] = {}

    def add(self, image: str, member_id: str, until: float) -> None:
        members = self._until.pop(image, None) or {}
        members[member_id] = until
        self._until[image] = members  # re-inserted: the dict's order is least recently sent first
        if len(self._until) > self.MAX_REPOS:
            del self._until[next(iter(self._until))]

    def at(self, image: str, now: float) -> frozenset[str]:
        members = self._until.get(image)
        if not members:
            return frozenset()
        live = frozenset(m for m, until in members.items() if until > now)
        if len(live) < len(members):
            if live:
                self._until[image] = {m: members[m] for m in live}
            else:
                del self._until[image]
        return live


def _base(f: MemberFacts) -> float:
    """The request-independent cost, without the ready part of a member without history."""
    return f.load + f.reliability + f.weight + (f.ready if f.ready_seconds is not None else 0.0)


def _hot_bound(occupied: float, weight: float, s: RoutingSettings) -> float:
    """The member is hot iff the federation's sessions per unit weight are below this bound."""
    return min(occupied / (s.load_spill_factor * weight), (occupied - s.spill_min_sessions) / weight)


@dataclass
class _Scan:
    """One decision's candidates so far and where the base-order scan stands."""

    chosen: dict[str, MemberFacts]
    known: int = 0
    unknown: int = 0
    exhausted: bool = False


class RoutingIndex:
    """Routing facts of every member, kept current by :meth:`update`; decisions by :meth:`decide`."""

    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings
        self._snapshot: RegistrySnapshot | None = None
        self._facts: dict[str, MemberFacts] = {}
        self._known: list[tuple[float, str]] = []  # cool candidates with a ready history, by base
        self._unknown: list[tuple[float, str]] = []  # ... without one (their ready part is the neutral one)
        self._keys: dict[str, tuple[bool, float]] = {}  # member -> (in _known, base) while listed
        self._suspect: set[str] = set()
        self._images: dict[str, set[str]] = {}
        self._exact: dict[str, dict[str, int | None]] = {}
        self._prefixes: dict[str, set[str]] = {}
        self._prefix_lengths: dict[int, int] = {}
        self._live: dict[str, tuple[float, float]] = {}  # member -> (occupied, weight), for hot shares
        self._sessions = 0.0
        self._bounds: list[tuple[float, str]] = []  # (hot bound, member), ascending
        self._hot_cache: dict[str, float] | None = None
        self._ready: dict[frozenset[str], list[float]] = {}  # providers -> [sum, count] of known ready times

    # -- updates ---------------------------------------------------------------------------------
    def update(self, snapshot: RegistrySnapshot, views: Mapping[str, HealthView],
               changed: Iterable[str] | None) -> None:
        """Bring the index to ``snapshot`` and ``views``. ``changed`` names the members whose view
        changed since the last call (None: any may have). Registry changes are found by identity."""
        ids: set[str] | None = None if changed is None else set(changed)
        if self._snapshot is not snapshot:
            old = self._snapshot.members if self._snapshot is not None else {}
            if ids is not None:
                ids.update(m for m, e in snapshot.members.items() if old.get(m) is not e)
                ids.update(m for m in old if m not in snapshot.members)
            self._snapshot = snapshot
        for member_id in (ids if ids is not None else set(snapshot.members) | set(self._facts)):
            entry = snapshot.members.get(member_id)
            self._set(member_id, entry, views.get(member_id) if entry is not None else None)

    def _set(self, member_id: str, entry: MemberEntry | None, view: HealthView | None) -> None:
        old = self._facts.get(member_id)
        if old is not None and entry is old.entry and view is old.view:
            return
        new = MemberFacts.of(entry, view, self.settings, prior=old) if entry is not None else None
        self._unlist(old, new)
        if new is None:
            self._facts.pop(member_id, None)
            return
        self._facts[member_id] = new
        self._list(new, old)

    def _unlist(self, old: MemberFacts | None, new: MemberFacts | None) -> None:
        if old is None:
            return
        key = self._keys.pop(old.id, None)
        if key is not None:
            ordered = self._known if key[0] else self._unknown
            i = bisect_left(ordered, (key[1], old.id))
            del ordered[i]
        self._suspect.discard(old.id)
        if old.id in self._live:
            occupied, weight = self._live.pop(old.id)
            self._sessions -= occupied
            del self._bounds[bisect_left(self._bounds, (_hot_bound(occupied, weight, self.settings), old.id))]
        self._hot_cache = None
        if old.reason is None and old.ready_seconds is not None:
            self._ready_add(old, -1.0)
        if new is None or new.images is not old.images:
            for image in old.images - (new.images if new is not None else frozenset()):
                holders = self._images.get(image)
                if holders is not None:
                    holders.discard(old.id)
                    if not holders:
                        del self._images[image]
        if new is None or new.exact is not old.exact or new.prefixes is not old.prefixes:
            self._unlist_datasets(old)

    def _list(self, f: MemberFacts, old: MemberFacts | None) -> None:
        if f.reason is None:
            if f.suspect > 0:
                self._suspect.add(f.id)
            else:
                base = _base(f)
                known = f.ready_seconds is not None
                insort(self._known if known else self._unknown, (base, f.id))
                self._keys[f.id] = (known, base)
            if f.ready_seconds is not None:
                self._ready_add(f, 1.0)
        if counts_in_share(f):
            weight = f.entry.record.weight
            self._live[f.id] = (f.occupied, weight)
            self._sessions += f.occupied
            insort(self._bounds, (_hot_bound(f.occupied, weight, self.settings), f.id))
        if old is None or f.images is not old.images:
            for image in f.images - (old.images if old is not None else frozenset()):
                self._images.setdefault(image, set()).add(f.id)
        if old is None or f.exact is not old.exact or f.prefixes is not old.prefixes:
            for ds, size in f.exact.items():
                self._exact.setdefault(ds, {})[f.id] = size
            for prefix in f.prefixes:
                self._prefixes.setdefault(prefix, set()).add(f.id)
                self._prefix_lengths[len(prefix)] = self._prefix_lengths.get(len(prefix), 0) + 1

    def _unlist_datasets(self, old: MemberFacts) -> None:
        for ds in old.exact:
            sizes = self._exact.get(ds)
            if sizes is not None:
                sizes.pop(old.id, None)
                if not sizes:
                    del self._exact[ds]
        for prefix in old.prefixes:
            members = self._prefixes.get(prefix)
            if members is not None and old.id in members:
                members.discard(old.id)
                if not members:
                    del self._prefixes[prefix]
                left = self._prefix_lengths[len(prefix)] - 1
                if left:
                    self._prefix_lengths[len(prefix)] = left
                else:
                    del self._prefix_lengths[len(prefix)]

    def _ready_add(self, f: MemberFacts, sign: float) -> None:
        assert f.ready_seconds is not None
        acc = self._ready.setdefault(f.providers, [0.0, 0.0])
        acc[0] += sign * f.ready_seconds
        acc[1] += sign
        if acc[1] <= 0:
            del self._ready[f.providers]

    # -- queries -----------------------------------------------------------------------------------
    def facts(self) -> list[MemberFacts]:
        return list(self._facts.values())

    def holds(self, member_id: str, image: str) -> bool:
        """Whether the member's image summary lists ``image``."""
        f = self._facts.get(member_id)
        return f is not None and image in f.images

    def why_not(self, member_id: str, provider: str) -> str | None:
        """Why the member could not take a ``provider`` launch now (None: it could)."""
        f = self._facts.get(member_id)
        return "not a member" if f is None else f.why_not(provider)

    def hot(self) -> dict[str, float]:
        """Members above their weight's share of sessions (``routingfacts.hot_members``), with the ratio."""
        if self._hot_cache is not None:
            return self._hot_cache
        total_weight = sum(w for _, w in self._live.values())
        hot: dict[str, float] = {}
        if total_weight > 0:
            per_weight = self._sessions / total_weight
            s = self.settings
            # Candidates from the sorted bounds (with a margin for rounding), then the exact test.
            for _, m in self._bounds[bisect_left(self._bounds, (per_weight - 1e-6, "")):]:
                occupied, weight = self._live[m]
                fair = weight / total_weight * self._sessions
                if occupied > max(s.load_spill_factor * fair, fair + s.spill_min_sessions):
                    hot[m] = occupied / fair
        self._hot_cache = hot
        return hot

    def neutral_ready(self, provider: str) -> float:
        """The ready part of a member without history: the mean over routable members (``MemberPool``)."""
        total, count = 0.0, 0.0
        for providers, (s, n) in self._ready.items():
            if not providers or provider in providers:
                total, count = total + s, count + n
        return round((total / count if count else 0.0) * self.settings.ready_time_weight, 3)

    def storers(self, wanted: list[str]) -> set[str]:
        """Members storing any of the (normalised) datasets, exactly or under a prefix."""
        found: set[str] = set()
        for w in wanted:
            found.update(self._exact.get(w, ()))
            for length in self._prefix_lengths:
                found.update(self._prefixes.get(w[:length], ()) if len(w) >= length else ())
        return found

    def sizes(self, wanted: list[str]) -> dict[str, int]:
        """The largest size any member reports for each wanted dataset (as ``routing`` prices it)."""
        out: dict[str, int] = {}
        for w in wanted:
            known = [size for size in self._exact.get(w, {}).values() if size is not None]
            if known:
                out[w] = max(known)
        return out

    # -- decisions ---------------------------------------------------------------------------------
    def explain(self, request: RouteRequest, decision_id: str, pending: frozenset[str] = frozenset()) -> RouteDecision:
        """Every member ranked and explained (dry runs, ``--explain``): ``rank`` over the index's facts."""
        pool = MemberPool.of(self.facts(), request.repo.provider, self.settings)
        return _rank(pool, request, self.settings, decision_id, None, pending)

    def decide(self, request: RouteRequest, decision_id: str, detail: int,
               pending: frozenset[str] = frozenset()) -> RouteDecision:
        """The best ``detail`` candidates, as ``rank(..., detail=detail)`` orders them."""
        provider = request.repo.provider
        wanted = request.needed_datasets()
        ctx = make_context(request, self.settings, wanted, self.sizes(wanted), self.neutral_ready(provider), pending)
        hot = self.hot()
        scan = _Scan(chosen={})
        full = sum(ctx.fetch.values())
        storing = self.storers(wanted) if wanted else set()
        holders = self._images.get(ctx.image, set())
        few_holders = len(holders) <= _HOLDER_LIMIT
        for group in (storing, holders if few_holders else (), pending, hot, self._suspect):
            for m in group:
                f = self._facts.get(m)
                if f is not None and f.why_not(provider) is None:
                    scan.chosen[m] = f
        bound = (ctx.build if few_holders else 0.0) + full - _TOLERANCE
        batch = _FIRST_BATCH
        while True:
            self._scan(scan, provider, ctx.neutral_ready, batch)
            ordered = self._final(scan, ctx, hot, storing, bound, detail)
            if ordered is not None:
                return self._decision(request, ctx, decision_id, scan, ordered, hot, detail)
            batch *= 2

    def _scan(self, scan: _Scan, provider: str, neutral: float, batch: int) -> None:
        """Add the next ``batch`` members in base order (the two lists merged) to the candidates."""
        added = 0
        known, unknown = self._known, self._unknown
        while added < batch:
            k = known[scan.known] if scan.known < len(known) else None
            u = unknown[scan.unknown] if scan.unknown < len(unknown) else None
            if k is None and u is None:
                scan.exhausted = True
                return
            if k is not None and (u is None or k[0] <= u[0] + neutral):
                m, scan.known = k[1], scan.known + 1
            elif u is not None:
                m, scan.unknown = u[1], scan.unknown + 1
            f = self._facts[m]
            if m not in scan.chosen and f.why_not(provider) is None:
                scan.chosen[m] = f
                added += 1

    def _next_base(self, scan: _Scan, neutral: float) -> float:
        k = self._known[scan.known][0] if scan.known < len(self._known) else float("inf")
        u = self._unknown[scan.unknown][0] + neutral if scan.unknown < len(self._unknown) else float("inf")
        return min(k, u)

    def _final(self, scan: _Scan, ctx: _Context, hot: dict[str, float], storing: set[str], bound: float,
               detail: int) -> list[str] | None:
        """The candidates' order when no unseen member can enter its first ``detail``, else None."""
        chosen = scan.chosen
        data = {m: _data_cost(f, ctx) for m, f in chosen.items()} if ctx.wanted else {}
        totals = {m: _total(f, ctx, data.get(m, 0.0)) for m, f in chosen.items()}
        if scan.exhausted:
            return self._order(chosen, totals, data, ctx, hot)
        # Unseen members store nothing: the least-data tier is only exact once a non-storer was seen.
        if ctx.wanted and all(m in storing for m in chosen):
            return None
        local = _least_data(data, ctx)
        ordered = self._order(chosen, totals, data, ctx, hot)
        unseen_local = local is None or not ctx.fetch or min(data.values()) >= sum(ctx.fetch.values())
        group = _group_of(chosen, local, hot)
        unseen_group = 0 if unseen_local else 2
        if sum(1 for m in ordered if group(m) < unseen_group) >= detail:
            return ordered
        if len(ordered) < detail or group(ordered[detail - 1]) != unseen_group:
            return None
        lb = self._next_base(scan, ctx.neutral_ready) + bound
        cool = [totals[m] for m in chosen if group(m) == unseen_group]
        best = min(cool)
        last = ordered[detail - 1]
        near = totals[last] <= best + ctx.settings.near_equal
        return ordered if lb > best + ctx.settings.near_equal and (near or totals[last] < lb) else None

    @staticmethod
    def _order(chosen: dict[str, MemberFacts], totals: dict[str, float], data: dict[str, float],
               ctx: _Context, hot: dict[str, float]) -> list[str]:
        in_hot = {m: r for m, r in hot.items() if m in chosen}
        return _order(chosen, totals, _least_data(data, ctx), in_hot, ctx.request.repo.key, ctx.settings, None)[0]

    def _decision(self, request: RouteRequest, ctx: _Context, decision_id: str, scan: _Scan,
                  ordered: list[str], hot: dict[str, float], detail: int) -> RouteDecision:
        chosen = scan.chosen
        data = {m: _data_cost(f, ctx) for m, f in chosen.items()} if ctx.wanted else {}
        shown = ordered[:detail]
        candidates = []
        best = _total(chosen[shown[0]], ctx, data.get(shown[0], 0.0)) if shown else 0.0
        for i, m in enumerate(shown):
            cost = _total(chosen[m], ctx, data.get(m, 0.0))
            reason = "chosen" if i == 0 else (
                f"spilled: runs {hot[m]:.2f}x its weight's share of sessions" if m in hot
                else f"cost {cost - best:.1f} s above the chosen member")
            candidates.append(Candidate.model_construct(member_id=m, rank=i + 1, routable=True, cost=cost,
                                                        parts={}, reason=reason))
        if not shown:
            blocked = sorted((f.id, why) for f in self._facts.values()
                             if (why := f.why_not(request.repo.provider)) is not None)
            for member_id, why in blocked:
                candidates.append(Candidate.model_construct(member_id=member_id, rank=len(candidates) + 1,
                                                            routable=False, cost=None, parts={}, reason=why))
        return RouteDecision.model_construct(
            decision_id=decision_id, provider=request.repo.provider, spec=request.repo.spec,
            repo_key=request.repo.key, data=ctx.wanted, client_region=request.client_region, candidates=candidates,
        )


def _group_of(chosen: Mapping[str, MemberFacts], local: frozenset[str] | None,
              hot: Mapping[str, float]) -> Callable[[str], int]:
    """A candidate's group in ``routing._order``: (suspect tier, data tier) then hot after cool, as one int."""
    def group(m: str) -> int:
        tier = (2 if chosen[m].suspect > 0 else 0) + (0 if local is None or m in local else 1)
        return tier * 2 + (1 if m in hot else 0)
    return group
