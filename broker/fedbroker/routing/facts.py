"""Per-member routing facts: what ranking needs of one member that does not depend on the launch.

Derived once per (registry entry, health view, settings) and reused across launches. At 1,000
members, re-deriving these per launch (normalising every dataset id, scanning image-hash lists,
pricing load and reliability) cost about 70 ms a decision; looked up here it is microseconds.
Pure: no I/O and no clock, like :mod:`fedbroker.routing`, which is the only user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping

from fedproto.datasets import Dataset, normalise_dataset_id
from fedproto.location import Location
from fedproto.member import MemberState
from fedproto.repoglob import serves_repo
from fedproto.routing import RouteDecision

from ..config import RoutingSettings
from ..registry.snapshot import MemberEntry, RegistrySnapshot
from .claims import held_datasets
from .health import HealthState, HealthView


def stored_datasets(entry: MemberEntry, view: HealthView | None) -> list[Dataset]:
    """Datasets routing may believe the member stores: the registry's (its record and the dataset
    declarations naming it), narrowed by its ad's list when it gives one, never widened."""
    advertised = view.ad.datasets if view is not None and view.ad is not None else None
    return held_datasets([*entry.record.datasets, *entry.declared], advertised)


def member_location(entry: MemberEntry, view: HealthView | None) -> Location:
    """The ad's location when it gives one, else the registry record's."""
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
        # The poll's own failure ("status answered HTTP 401, unknown_key", "certificate verify
        # failed: ...") says what to fix; "never answered" alone sent operators to the logs.
        failure = view.last_error if view is not None else None
        return f"no status yet: {failure}" if failure else "no status yet: never answered a poll"
    if view.ad_expired:
        return "expired ad: its last status ad has expired (member gone)"
    if view.state is not HealthState.healthy:
        return f"unhealthy: {view.last_error or 'failed its recent polls'}"
    if view.ejected:
        return "ejected: consecutive launch failures; back after a passing poll"
    if view.canary.ejected:
        last = view.canary.last
        why = f": {last.reason}" if last is not None and last.reason else ""
        return f"canary failed {view.canary.failures} times in a row{why}; back after a passing canary"
    if provider is not None and view.ad.providers and provider not in view.ad.providers:
        return f"provider not supported: {provider}"
    if view.free <= 0:
        return "no capacity: every slot is used or building"
    return None


def not_served_reason(serves: tuple[str, ...] | None, repo_key: str) -> str | None:
    """Why a member advertising ``serves`` cannot take ``repo_key`` (None: it can). The ad's globs
    only narrow: a member that still refuses (501) fails over as before."""
    if serves_repo(serves, repo_key):
        return None
    shown = ", ".join(serves[:3]) + (", ..." if len(serves or ()) > 3 else "")  # type: ignore[index]
    return f"does not serve {repo_key}: it serves {shown or 'no repository'}"


def _datasets(entry: MemberEntry, view: HealthView | None) -> tuple[dict[str, int | None], tuple[str, ...]]:
    exact: dict[str, int | None] = {}
    prefixes = []
    for ds in stored_datasets(entry, view):
        norm = normalise_dataset_id(ds.id)
        if ds.prefix:
            prefixes.append(norm)
        else:
            known = exact.get(norm)
            exact[norm] = known if ds.size_bytes is None else max(known or 0, ds.size_bytes)
    return exact, tuple(prefixes)


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """One member's request-independent routing inputs. Cost parts here are already rounded."""

    id: str
    entry: MemberEntry
    view: HealthView | None
    reason: str | None  # unroutable for any provider, or None
    providers: frozenset[str]
    serves: tuple[str, ...] | None  # the ad's repo-key globs; None: every repo of its providers
    images: frozenset[str]
    exact: dict[str, int | None]  # normalised exact dataset id -> largest listed size
    prefixes: tuple[str, ...]  # normalised prefix dataset ids
    location: Location
    region: str | None  # lower-cased
    load_share: float  # used share of capacity (0 when unknown)
    occupied: float  # slots the last ad reports taken plus launches sent since (0 without an ad)
    load: float  # the rounded load part: priced with load_headroom_sessions more sessions (_priced_load)
    reliability: float
    weight: float
    suspect: float
    ready_seconds: float | None
    ready: float  # the rounded ready-time part, when ready_seconds is known (else the pool's neutral one)

    @classmethod
    def of(
        cls, entry: MemberEntry, view: HealthView | None, s: RoutingSettings, images: frozenset[str] | None = None,
        prior: MemberFacts | None = None,
    ) -> MemberFacts:
        """The facts; ``images``, when given, is the image set already derived from this view's ad.

        ``prior`` (the member's previous facts): what depends only on the entry and the ad (image set,
        datasets, location, providers) is taken from it when both are the very same objects, so a
        view that changed by a launch outcome or provisional load costs a few scalars, not a re-parse.
        """
        ad = view.ad if view is not None else None
        same = prior is not None and prior.entry is entry and prior.view is not None and prior.view.ad is ad
        if same and prior is not None:
            exact, prefixes, loc, providers = prior.exact, prior.prefixes, prior.location, prior.providers
            images = prior.images
        else:
            exact, prefixes = _datasets(entry, view)
            loc = member_location(entry, view)
            providers = frozenset(ad.providers) if ad is not None else frozenset()
            # A new ad usually lists the same images as the last (a poll every 10 s): comparing the
            # lists in C is far cheaper than a new set, and keeps the index's holder lists untouched.
            old_ad = prior.view.ad if prior is not None and prior.view is not None else None
            if images is None and ad is not None and old_ad is not None and old_ad.images.hashes == ad.images.hashes:
                images = prior.images if prior is not None else None
            if prior is not None and prior.exact == exact and prior.prefixes == prefixes:
                exact, prefixes = prior.exact, prior.prefixes
        share = (view.load or 0.0) if view is not None else 0.0
        priced = _priced_load(view, s)
        weight = entry.record.weight
        # Time-to-ready as canaries measure it (the launch part: the same small repo everywhere, its
        # image cached), the one entry point of canaries into routing's costs. User launches' times mix
        # builds of every size, which the image part prices.
        ready_seconds = view.canary.ready_seconds if view is not None else None
        return cls(
            id=entry.record.id, entry=entry, view=view, reason=unroutable_reason(entry, view, None),
            providers=providers, serves=tuple(ad.serves) if ad is not None and ad.serves is not None else None,
            images=images if images is not None else frozenset(ad.images.hashes) if ad is not None else frozenset(),
            exact=exact, prefixes=prefixes, location=loc, region=loc.region.lower() if loc.region else None,
            load_share=share, load=round(priced * s.load_seconds, 3),
            occupied=view.occupied if ad is not None and view else 0.0,
            reliability=round((1.0 - (view.success_rate if view is not None else 1.0)) * s.failure_seconds, 3),
            weight=round(s.weight_seconds * (1.0 / weight - 1.0), 3) if weight > 0 else 0.0,
            suspect=round(s.suspect_seconds, 3) if view is not None and view.last_poll_ok is False else 0.0,
            ready_seconds=ready_seconds,
            ready=round(ready_seconds * s.ready_time_weight, 3) if ready_seconds is not None else 0.0,
        )

    def stores(self, wanted: str) -> bool:
        """Whether the member stores the (normalised) dataset, exactly or under a prefix."""
        # str.startswith with a tuple runs in C; a generator over the prefixes cost ~1 µs a member.
        return wanted in self.exact or (bool(self.prefixes) and wanted.startswith(self.prefixes))

    def why_not(self, provider: str, repo_key: str | None = None) -> str | None:
        """:func:`unroutable_reason` for ``provider``, from the facts; with ``repo_key``, also
        whether the member's ad says it serves that repository."""
        if self.reason is not None:
            return self.reason
        if self.providers and provider not in self.providers:
            return f"provider not supported: {provider}"
        if repo_key is not None and self.serves is not None:
            return not_served_reason(self.serves, repo_key)
        return None


def _priced_load(view: HealthView | None, s: RoutingSettings) -> float:
    """The share of capacity the load part prices: the member's sessions plus ``load_headroom_sessions``
    over its capacity for users plus the same, at most 1 (0 without an ad or capacity, as ``HealthView.load``).

    The headroom is added below the line too, so a member is priced full only when it is full: added
    above alone, a member of 3 slots or fewer priced as full while idle, and its load part no longer
    told an idle member from a busy one (the demo's three members all showed ``load 200``).

    The same few sessions are a larger share of a small member, whose load also swings the most for its
    size (a handful of sessions against a fair share of a handful). Priced this way, launches free to go
    to any of several members (an image several hold, a repo nobody holds yet) fill a small member a
    little less than a large one, and leave it room for the launches only it can take without a rebuild
    (the images only it holds), instead of pushing it over its share or making them rebuild elsewhere
    (benchmarks/replay, mybinder preset: BENCHMARKS.md, "Routing quality").
    """
    if view is None or view.ad is None or view.user_total <= 0:
        return 0.0
    h = s.load_headroom_sessions
    return min(1.0, (view.occupied + h) / (view.user_total + h))


def preset_totals(f: MemberFacts, neutral_ready: float, s: RoutingSettings) -> tuple[float, float, float, float]:
    """The member's total cost for a launch that needs no dataset and comes without client
    coordinates, for each of (image cached, region matches), (cached, other region),
    (not cached, matches), (not cached, other region).

    The sum runs in the order of ``routing.PART_NAMES`` with the same rounded parts, so each
    number is bit for bit what ``routing.cost_parts`` adds up to (a test holds them equal).
    """
    ready = f.ready if f.ready_seconds is not None else neutral_ready
    build, mismatch = round(s.build_seconds, 3), round(s.region_mismatch_seconds, 3)
    return tuple(  # type: ignore[return-value]
        round(0.0 + image + f.load + f.reliability + ready + region + f.weight + f.suspect, 3)
        for image in (0.0, build) for region in (0.0, mismatch)
    )


@dataclass(frozen=True)
class MemberPool:
    """The members split for one provider: who can take its launches, who cannot and why,
    and the routable members' preset totals (see :func:`preset_totals`)."""

    facts: list[MemberFacts]
    routable: list[MemberFacts]
    blocked: list[tuple[str, str]]  # (member id, why), sorted
    neutral_ready: float  # the ready-time part of a member with no launches yet: the routable mean
    by_id: dict[str, MemberFacts]  # the routable ones
    priced: list[tuple[MemberFacts, tuple[float, float, float, float]]]
    hot: dict[str, float]  # members above load_spill_factor x their weight's share of sessions -> that ratio
    narrowed: tuple[MemberFacts, ...] = ()  # routable members whose ad lists the repos they serve
    hot_new: dict[str, float] = field(default_factory=dict)  # the same for a repo nobody holds (is_hot)

    @classmethod
    def of(cls, facts: list[MemberFacts], provider: str, s: RoutingSettings) -> MemberPool:
        routable, blocked = [], []
        for f in facts:
            why = f.why_not(provider)
            if why is None:
                routable.append(f)
            else:
                blocked.append((f.id, why))
        known = [f.ready_seconds for f in routable if f.ready_seconds is not None]
        neutral = round((sum(known) / len(known) if known else 0.0) * s.ready_time_weight, 3)
        return cls(facts, routable, sorted(blocked), neutral, {f.id: f for f in routable},
                   [(f, preset_totals(f, neutral, s)) for f in routable], hot_members(facts, s),
                   tuple(f for f in routable if f.serves is not None), hot_members(facts, s, new_repo=True))

    def holds_anywhere(self, image: str) -> bool:
        """Whether any member's ad (routable or not) lists ``image``, as the routing index's holders."""
        return any(image in f.images for f in self.facts)

    def restricted(self, allowed: frozenset[str], why: str) -> MemberPool:
        """This pool with only ``allowed`` members routable; the others blocked for ``why`` (a
        dataset's serving policy). Costs, the neutral ready time and hot members stay as they are."""
        return self._without({f.id: why for f in self.routable if f.id not in allowed})

    def for_repo(self, repo_key: str) -> MemberPool:
        """This pool without the members whose ad says they do not serve ``repo_key``
        (:func:`not_served_reason`, which :meth:`MemberFacts.why_not` and so the routing index apply too)."""
        return self._without({f.id: why for f in self.narrowed if (why := not_served_reason(f.serves, repo_key))})

    def _without(self, out: dict[str, str]) -> MemberPool:
        if not out:
            return self
        keep = [f for f in self.routable if f.id not in out]
        blocked = sorted(self.blocked + list(out.items()))
        return MemberPool(self.facts, keep, blocked, self.neutral_ready, {f.id: f for f in keep},
                          [(f, p) for f, p in self.priced if f.id not in out], self.hot,
                          tuple(f for f in self.narrowed if f.id not in out), self.hot_new)


def counts_in_share(f: MemberFacts) -> bool:
    """Whether the member's sessions count in the federation's total: active, weighted, with a live ad."""
    view = f.view
    return (
        f.entry.record.state is MemberState.active and f.entry.record.weight > 0
        and view is not None and view.ad is not None and not view.ad_expired
    )


def is_hot(occupied: float, fair: float, s: RoutingSettings, new_repo: bool) -> bool:
    """Whether a member running ``occupied`` sessions against a ``fair`` share is hot (the one rule;
    :func:`hot_members` and the routing index both apply it).

    For most launches: above ``load_spill_factor`` x its share and ``spill_min_sessions`` above it,
    since spilling a launch of a repo the member holds costs a rebuild elsewhere. For a launch of a
    repo no member holds or is building (``new_repo``), above ``new_repo_spill_factor`` x its share:
    it builds wherever it goes, so keeping it off a busy member is free, and it is what places the
    long tail's images evenly (benchmarks/replay: fewer rebuilds and a lower peak in both regimes).
    """
    if new_repo:
        return occupied > s.new_repo_spill_factor * fair
    return occupied > max(s.load_spill_factor * fair, fair + s.spill_min_sessions)


def hot_until(occupied: float, weight: float, s: RoutingSettings, new_repo: bool) -> float:
    """:func:`is_hot` turned around: a member with ``occupied`` sessions and ``weight`` is hot exactly
    while the federation's sessions per unit of weight (its sessions over its weight, the ``fair``
    of ``is_hot`` over ``weight``) stay below this number. It depends on the member alone, so the
    routing index can keep its hot members apart while the federation's totals move
    (:class:`~fedbroker.routing.hotsplit.HotSplit`). Change it with ``is_hot``; a test holds them equal.

    From ``is_hot`` with fair = weight * x: ``occupied > f * weight * x`` holds while
    x < occupied / (f * weight); ``occupied > weight * x + m`` while x < (occupied - m) / weight.
    The spill factors are at least 1 (config), so no division by zero; a member of weight 0 never
    counts in the share (``counts_in_share``) and is never hot.
    """
    if weight <= 0:
        return float("-inf")
    if new_repo:
        return occupied / (s.new_repo_spill_factor * weight)
    return min(occupied / (s.load_spill_factor * weight), (occupied - s.spill_min_sessions) / weight)


def hot_members(facts: list[MemberFacts], s: RoutingSettings, new_repo: bool = False) -> dict[str, float]:
    """Members hot by :func:`is_hot`, with their ratio of sessions to their weight's share of the
    federation's sessions. Full members count in the total too: their sessions are real."""
    live = [f for f in facts if counts_in_share(f)]
    total = sum(f.occupied for f in live)
    total_weight = sum(f.entry.record.weight for f in live)
    hot = {}
    for f in live:
        fair = f.entry.record.weight / total_weight * total
        if is_hot(f.occupied, fair, s, new_repo):
            hot[f.id] = f.occupied / fair
    return hot


class RoutingMemo:
    """A cache of :class:`MemberFacts` keyed on the identity of each member's entry and view.

    Entries and views are immutable and replaced on every registry or health change, so an
    identity match means the facts are current, and a decision with a memo is identical to
    one without. When the snapshot and the health mapping are the very objects of the last
    call (the health table hands out the same mapping until something changes), the per-provider
    pools are reused too, and so are whole decisions for a launch target already seen: on a busy
    front door most launches are for a few popular repos, and between two health changes their
    ranking cannot differ. Any poll result or registry change starts a new generation, so a
    member seen failing is never chosen from a remembered decision. One memo per dispatcher
    (not module state); members that left are dropped.
    """

    # Distinct launch targets remembered per (snapshot, health) generation; past it, start over.
    MAX_DECISIONS = 4096

    def __init__(self) -> None:
        self._facts: dict[str, MemberFacts] = {}
        self._key: tuple[object, object, object] | None = None
        self._pools: dict[str, MemberPool] = {}
        self._decisions: dict[Hashable, RouteDecision] = {}

    def pool(
        self, snapshot: RegistrySnapshot, health: Mapping[str, HealthView], settings: RoutingSettings, provider: str
    ) -> MemberPool:
        """The current facts of every member in ``snapshot``, split for ``provider``."""
        key = (snapshot, health, settings)
        if self._key is None or any(a is not b for a, b in zip(key, self._key)):
            self._refresh(snapshot, health, settings)
            self._key, self._pools, self._decisions = key, {}, {}
        if provider not in self._pools:
            if len(self._pools) > 64:  # providers come from a fixed list; this only bounds odd input
                self._pools.clear()
            self._pools[provider] = MemberPool.of(list(self._facts.values()), provider, settings)
        return self._pools[provider]

    def _refresh(self, snapshot: RegistrySnapshot, health: Mapping[str, HealthView], settings: RoutingSettings) -> None:
        old = self._facts if self._key is not None and settings is self._key[2] else {}
        new = {}
        for member_id, entry in snapshot.members.items():
            view = health.get(member_id)
            f = old.get(member_id)
            if f is not None and f.entry is entry and f.view is view:
                new[member_id] = f
            else:
                # Every launch sent to a member gives it a new view (recent_launches) with the same
                # ad; rebuilding the image set from a list of up to 20,000 hashes each time made a
                # million-launch replay ~4x slower. The set depends on the ad alone.
                same_ad = f is not None and f.view is not None and view is not None and f.view.ad is view.ad
                new[member_id] = MemberFacts.of(entry, view, settings, f.images if same_ad and f else None)
        self._facts = new

    def decision(self, key: Hashable) -> RouteDecision | None:
        """A decision made for ``key`` since the snapshot and health last changed (call :meth:`pool` first)."""
        return self._decisions.get(key)

    def remember(self, key: Hashable, decision: RouteDecision) -> None:
        if len(self._decisions) >= self.MAX_DECISIONS:
            self._decisions.clear()
        self._decisions[key] = decision

    def why_not(self, member_id: str, provider: str) -> str | None:
        """Whether the member could take a ``provider`` launch at the last :meth:`pool` call."""
        f = self._facts.get(member_id)
        return "not a member" if f is None else f.why_not(provider)
