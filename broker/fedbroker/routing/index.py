"""The routing index: per-member routing facts kept up to date one member at a time, and decisions
that look only at the members that can win.

:func:`fedbroker.routing.rank.rank` prices every routable member for every launch; at 1,000 members
that is milliseconds, and each poll result made the next decision rebuild the whole pool. The
index instead keeps, incrementally (a poll result, a launch outcome, provisional load or a
registry change touches only that member's entries):

* the routable members that are not suspect, sorted by their *base* cost (the request-independent
  parts: load, reliability, ready time, weight), one list per (region, has a ready history), and
  the same lists without the members surely hot by each hot rule (:class:`HotSplit`): a decision
  puts hot members after every cool one, so it scans those only when too few members are cool;
* which members list each image hash, and which store each dataset (exact ids and prefixes);
* the federation's sessions and weight, so whether a member is hot is one comparison;
* where each repo was just sent (*pending* images, see :class:`~fedbroker.routing.pending.PendingImages`, kept by the caller).

A real launch then prices only: the members storing its data, the pending and suspect ones, and
the cool others in order of a lower bound on their total (base, plus the region mismatch of their
list, plus the build for members not holding the image; the holders come as a stream of their
own) until no unseen member can enter the best ``detail``. That is a few dozen members whatever
the federation's size (more when many members cost the same: the near-equal set takes the
cheapest by member id, so all of a tie are priced), and the decision is the one
:func:`~fedbroker.routing.rank.rank` would make (``tests/broker/test_routing_index.py`` and
``tests/replay/test_replay_index.py`` hold them equal, candidate by candidate). Explanations (every
member's cost parts, for dry runs and ``--explain``) go through ``rank`` on the index's facts.

**Adding a per-member fact** (time-to-ready from canaries, a new health signal): put it on the
member's :class:`~fedbroker.routing.health.HealthView` (the health table then reports the member
as changed), derive it in :meth:`MemberFacts.of <fedbroker.routing.facts.MemberFacts.of>`, and, if
it is a request-independent cost, add it to :func:`_base` and to ``rank._total`` in the same order.

Pure, like routing: no I/O and no clock (callers pass ``pending`` computed at their ``now``).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from typing import Iterable, Mapping

from fedproto.routing import Candidate, RouteDecision

from ..config import RoutingSettings
from ..registry.datasetpolicy import ServingLimit
from ..registry.snapshot import MemberEntry, RegistrySnapshot
from .facts import MemberFacts, MemberPool, counts_in_share, hot_until, is_hot
from .health import HealthView
from .hotsplit import HotSplit
from .rank import RouteRequest, _Context, _data_cost, _least_data, _order, _rank, _total, make_context
from .scan import ListKey, Scan, Stream, group_of

__all__ = ["RoutingIndex"]


def _base(f: MemberFacts) -> float:
    """The request-independent cost, without the ready part of a member without history. Rounded as
    totals are: every part is a multiple of 0.001, so base plus a stream's offset, rounded, is then
    exactly a member's total when the request adds no other part (see ``Scan.exact``)."""
    return round(f.load + f.reliability + f.weight + (f.ready if f.ready_seconds is not None else 0.0), 3)


class RoutingIndex:
    """Routing facts of every member, kept current by :meth:`update`; decisions by :meth:`decide`."""

    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings
        self._snapshot: RegistrySnapshot | None = None
        self._facts: dict[str, MemberFacts] = {}
        # Routable, not suspect members by base, one list per (region, has a ready history): a
        # decision adds each list's region and neutral ready part as an offset and merges them.
        self._lists: dict[ListKey, list[tuple[float, str]]] = {}
        self._keys: dict[str, tuple[ListKey, float]] = {}  # member -> (its list, base) while listed
        self._suspect: set[str] = set()
        self._images: dict[str, set[str]] = {}
        self._exact: dict[str, dict[str, int | None]] = {}
        self._prefixes: dict[str, set[str]] = {}
        self._prefix_lengths: dict[int, int] = {}
        self._live: dict[str, tuple[float, float]] = {}  # member -> (occupied, weight), for hot shares
        self._sessions = 0.0  # the federation's sessions and weight, over the members that count
        self._weight = 0.0
        self._ready: dict[frozenset[str], list[float]] = {}  # providers -> [sum, count] of known ready times
        # The listed members split by each hot rule (keyed by is_hot's new_repo), so a decision scans cool ones.
        self._splits: dict[bool, HotSplit[ListKey]] = {False: HotSplit(), True: HotSplit()}

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
            ordered = self._lists[key[0]]
            del ordered[bisect_left(ordered, (key[1], old.id))]
            for split in self._splits.values():
                split.remove(old.id)
        self._suspect.discard(old.id)
        if old.id in self._live:
            occupied, weight = self._live.pop(old.id)
            self._sessions -= occupied
            self._weight -= weight
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
                base, key = _base(f), (f.region, f.ready_seconds is not None)
                insort(self._lists.setdefault(key, []), (base, f.id))
                self._keys[f.id] = (key, base)
                counts = counts_in_share(f)
                for new_repo, split in self._splits.items():
                    until = hot_until(f.occupied, f.entry.record.weight, self.settings, new_repo) if counts else float("-inf")
                    split.place(f.id, key, base, until)
            if f.ready_seconds is not None:
                self._ready_add(f, 1.0)
        if counts_in_share(f):
            weight = f.entry.record.weight
            self._live[f.id] = (f.occupied, weight)
            self._sessions += f.occupied
            self._weight += weight
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

    def why_not(self, member_id: str, provider: str, repo_key: str | None = None) -> str | None:
        """Why the member could not take a ``provider`` launch (of ``repo_key``) now (None: it could)."""
        f = self._facts.get(member_id)
        return "not a member" if f is None else f.why_not(provider, repo_key)

    def hot_ratio(self, member_id: str, new_repo: bool = False) -> float | None:
        """The member's sessions over its weight's share when it is hot (``facts.is_hot``), else None."""
        live = self._live.get(member_id)
        if live is None or self._weight <= 0:
            return None
        occupied, weight = live
        fair = weight / self._weight * self._sessions
        return occupied / fair if is_hot(occupied, fair, self.settings, new_repo) else None

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
    def explain(self, request: RouteRequest, decision_id: str, pending: frozenset[str] = frozenset(),
                limit: ServingLimit | None = None) -> RouteDecision:
        """Every member ranked and explained (dry runs, ``--explain``): ``rank`` over the index's facts."""
        pool = MemberPool.of(self.facts(), request.repo.provider, self.settings).for_repo(request.repo.key)
        if limit is not None:
            pool = pool.restricted(limit.allowed, limit.reason)
        return _rank(pool, request, self.settings, decision_id, None, pending)

    def decide(self, request: RouteRequest, decision_id: str, detail: int,
               pending: frozenset[str] = frozenset(), limit: ServingLimit | None = None) -> RouteDecision:
        """The best ``detail`` candidates, as ``rank(..., detail=detail)`` orders them.

        ``limit`` (a dataset's serving policy, from ``DatasetPolicy.serving``) restricts the
        candidates to its members: they are priced directly, and every other member is listed
        as blocked by the policy when none of them can take the launch.
        """
        provider = request.repo.provider
        wanted = request.needed_datasets()
        ctx = make_context(request, self.settings, wanted, self.sizes(wanted), self.neutral_ready(provider), pending)
        holders = self._images.get(ctx.image, set())
        scan = Scan(ctx=ctx, new_repo=not holders and not pending)
        if limit is not None:
            for m in sorted(limit.allowed):
                self._consider(scan, m, provider)
            scan.exhausted = True
            allowed = self._final(scan, set(), detail) or []
            return self._decision(request, scan, decision_id, allowed[:detail], limit)
        storing = self.storers(wanted) if wanted else set()
        for group in (storing, pending, self._suspect):
            for m in group:
                self._consider(scan, m, provider)
        # Holders of a popular image get their own stream, so the others can be priced with the build.
        dense = len(holders) * 4 > len(self._keys)
        scan.holders, scan.build = (holders if holders and not dense else None), (ctx.build if not dense else 0.0)
        scan.exact = not wanted and request.client_location is None and not dense
        split = self._splits[scan.new_repo]
        split.advance(self._sessions / self._weight if self._weight > 0 else float("inf"))
        self._streams(scan, split.cool, split.hot)
        # The least that can make the order final: the near-equal set full, and one member after it.
        batch = max(detail, self.settings.near_equal_max) + 1
        while True:
            # After the first batch, when the order only waits for unseen members to be dearer than
            # some cost, price just the members whose bound is not above it (loads are coarse, so the
            # first batch often ends inside a run of equal costs), else a twice larger batch.
            self._scan(scan, provider, 0 if scan.need is not None else batch)
            ordered = self._final(scan, storing, detail)
            if ordered is not None:
                return self._decision(request, scan, decision_id, ordered[:detail])
            batch *= 2

    def _offset(self, region: str | None, known: bool, ctx: _Context) -> float:
        """What every member of one list pays beyond its base for this request, at least."""
        offset = 0.0 if known else ctx.neutral_ready
        if ctx.client_region and region and region != ctx.client_region:
            offset += ctx.mismatch
        return offset

    def _streams(self, scan: Scan, lists: Mapping[ListKey, list[tuple[float, str]]], skip: set[str]) -> None:
        """The base-ordered streams this decision scans, over ``lists`` and the holders of a popular
        image (without those in ``skip``); each stream's head is a lower bound on the total of every
        member it has left (with its data part added in ``_final``)."""
        ctx = scan.ctx
        for (region, known), items in lists.items():
            offset = self._offset(region, known, ctx) + scan.build
            scan.streams.append(Stream(items, offset))
        if scan.holders is not None:
            keyed = []
            for m in scan.holders:
                key = self._keys.get(m)
                if key is not None and m not in skip:
                    (region, known), base = key
                    keyed.append((base + self._offset(region, known, ctx), m))
            keyed.sort()
            scan.streams.append(Stream(keyed, 0.0))
        scan.heap = [st.head(i) for i, st in enumerate(scan.streams) if st.pos < len(st.items)]
        heapq.heapify(scan.heap)

    def _consider(self, scan: Scan, m: str, provider: str, bound: float | None = None) -> bool:
        """Price member ``m`` into the candidates if it can take the launch; whether it was new and did.
        ``bound``: its stream's bound, which is its very total when the scan is ``exact``."""
        if m in scan.totals:
            return False
        f = self._facts.get(m)
        if f is None or f.why_not(provider, scan.ctx.request.repo.key) is not None:
            return False
        ctx = scan.ctx
        data = _data_cost(f, ctx) if ctx.wanted else 0.0
        scan.facts[m] = f
        scan.data[m] = data
        scan.totals[m] = bound if bound is not None and scan.exact else _total(f, ctx, data)
        ratio = self.hot_ratio(m, scan.new_repo)
        if ratio is not None:
            scan.hot[m] = ratio
        return True

    def _scan(self, scan: Scan, provider: str, batch: int) -> None:
        """Price the next ``batch`` members by lower bound, over every stream; with ``batch`` 0, every
        member whose bound is at most ``scan.need`` (the bound that would make the order final)."""
        added, need = 0, scan.need if batch == 0 else None
        while added < batch or need is not None:
            if need is not None and scan.heap and scan.unseen_from() > need:
                return
            popped = scan.pop()
            if popped is None:
                if scan.widened:
                    scan.exhausted = True
                    return
                # Fewer cool members than the decision lists: the hot ones come in, by base like the rest.
                scan.widened = True
                self._streams(scan, self._lists, set())
                continue
            added += self._consider(scan, popped[1], provider, popped[0])

    def _final(self, scan: Scan, storing: set[str], detail: int) -> list[str] | None:
        """The candidates' order when no unseen member can enter its first ``detail``, else None.

        Unseen members are neither suspect nor storing,
        and each costs at least its stream's bound plus the data it lacks: they all fall in one data tier, cool or
        hot. The order is final when ``detail`` members come before that tier's cool group, or the
        ``detail``-th is in that cool group and no unseen member can be near-equal to its best or
        cheaper than the ``detail``-th.
        """
        ctx, totals = scan.ctx, scan.totals
        scan.need = None
        local = _least_data(scan.data, ctx)
        ordered = _order(scan.facts, totals, local, scan.hot, ctx.request.repo.key, ctx.settings, None)[0]
        if scan.exhausted:
            return ordered
        # The least-data tier is only exact once a member storing nothing was seen.
        if ctx.wanted and all(m in storing for m in totals):
            return None
        unseen_local = local is None or min(scan.data.values()) >= sum(ctx.fetch.values())
        group = group_of(scan.facts, local, scan.hot)
        unseen = 0 if unseen_local else 2
        if sum(1 for m in ordered[:detail] if group(m) < unseen) >= detail:
            return ordered
        if len(ordered) < detail or group(ordered[detail - 1]) != unseen:
            return None
        # Compared as (total, id): rank takes the cheapest near-equal members and the cheapest of the
        # rest by (total, id), so an unseen member after a candidate in that order cannot displace it.
        lb = scan.unseen_from()
        s = ctx.settings
        band = sorted((totals[m], m) for m in totals if group(m) == unseen)
        band = [b for b in band if b[0] <= band[0][0] + s.near_equal]
        # The near-equal set is final when no unseen member can join it: none is within near_equal of
        # the best, or the set is full (near_equal_max) of members before any unseen one.
        near_final = lb[0] > band[0][0] + s.near_equal or (len(band) >= s.near_equal_max and band[s.near_equal_max - 1] < lb)
        # A near-equal detail-th member is before lb too (both ways of being final put the set before it).
        last = (totals[ordered[detail - 1]], ordered[detail - 1])
        if near_final and last < lb:
            return ordered
        # Final once every unseen member comes after both (the way of being final easier to reach).
        band_need = band[s.near_equal_max - 1] if len(band) >= s.near_equal_max else (band[0][0] + s.near_equal, "\uffff")
        scan.need = max(band_need, last)
        return None

    def _decision(self, request: RouteRequest, scan: Scan, decision_id: str, shown: list[str],
                  limit: ServingLimit | None = None) -> RouteDecision:
        candidates = []
        best = scan.totals[shown[0]] if shown else 0.0
        for i, m in enumerate(shown):
            cost = scan.totals[m]
            reason = "chosen" if i == 0 else (
                f"spilled: runs {scan.hot[m]:.2f}x its weight's share of sessions" if m in scan.hot
                else f"cost {cost - best:.1f} s above the chosen member")
            candidates.append(Candidate.trusted(member_id=m, rank=i + 1, routable=True, cost=cost,
                                                parts={}, reason=reason))
        if not shown:
            blocked = sorted((f.id, why) for f in self._facts.values()
                             if (why := f.why_not(request.repo.provider, request.repo.key)
                                 or (limit.reason if limit is not None and f.id not in limit.allowed else None)))
            for member_id, why in blocked:
                candidates.append(Candidate.trusted(member_id=member_id, rank=len(candidates) + 1,
                                                    routable=False, cost=None, parts={}, reason=why))
        return RouteDecision.trusted(
            decision_id=decision_id, provider=request.repo.provider, spec=request.repo.spec,
            repo_key=request.repo.key, data=scan.ctx.wanted, client_region=request.client_region,
            candidates=candidates,
        )
