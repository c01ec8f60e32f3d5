"""Member health: the per-member state machine fed by polls and launch outcomes (pure, no I/O).

Health is soft state, rebuilt from probes after a restart. Three kinds of evidence feed it:

* active polls of the signed status ad, smoothed by hysteresis (``healthy_after`` /
  ``unhealthy_after`` consecutive results before the state flips);
* the ad itself, which is only good until its ``expires_at`` (an expired ad means gone);
* passive outlier detection from real launches: ``eject_after_failures`` consecutive failures
  eject the member for ``eject_base * 2**n`` seconds (capped at ``eject_max``); once that time
  has passed, the next passing poll re-admits it;
* canaries (:mod:`fedbroker.canary` decides, the canary runner feeds them here): consecutive
  failed canaries eject the member, the next passing one re-admits it; they also measure the
  time-to-ready routing prices, and own one reserved slot of the member's capacity.

Time comes from an injected :class:`~fedproto.clock.Clock` and jitter from an injected
``random.Random``, so every transition is tested by advancing a fake clock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Iterable, Mapping

from fedproto.canary import CanaryResult
from fedproto.clock import Clock
from fedproto.status import StatusAd

from ..config import HealthSettings
from .canary import CanaryHealth, CanaryView

RECENT_OUTCOMES = 10  # launch outcomes kept per member for the status page


class HealthState(str, Enum):
    """The smoothed poll state. ``unknown`` until the first poll answers."""

    unknown = "unknown"
    healthy = "healthy"
    unhealthy = "unhealthy"


@dataclass(frozen=True)
class HealthView:
    """An immutable reading of one member's health at one instant; what routing reads."""

    member_id: str
    state: HealthState
    ad: StatusAd | None
    ad_expired: bool
    last_poll_ok: bool | None
    last_error: str | None
    ejected: bool
    ejected_until: float | None
    success_rate: float
    ready_seconds: float | None
    recent_launches: int
    last_poll_at: float | None = None
    # The latest launch outcomes, oldest first, as (time, "ready" | "failed" | "repo_error").
    outcomes: tuple[tuple[float, str], ...] = ()
    canary: CanaryView = CanaryView()

    # Users' share of the member: a canaried member's reserved slot and its canary's server, while
    # the ad counts it, are taken out (fedbroker.canary), so canaries never count as user load.
    @property
    def occupied(self) -> int:
        """Slots users take: the ad's used + building plus launches sent since, without a canary's."""
        if self.ad is None:
            return 0
        cap = self.ad.capacity
        return max(0, cap.used + cap.building + self.recent_launches - (1 if self.canary.busy else 0))

    @property
    def user_total(self) -> int:
        """The member's capacity for users: its ad's total, less the canary's slot when reserved."""
        if self.ad is None:
            return 0
        return max(0, self.ad.capacity.total - (1 if self.canary.reserved else 0))

    @property
    def load(self) -> float | None:
        """Used share of users' capacity, counting launches sent since the last ad; None without an ad."""
        if self.ad is None or self.user_total <= 0:
            return None
        return min(1.0, self.occupied / self.user_total)

    @property
    def free(self) -> int:
        return max(0, self.user_total - self.occupied)


class MemberHealth:
    """One member's health state machine. Every method takes its time from the clock."""

    def __init__(
        self, member_id: str, settings: HealthSettings, clock: Clock, rng: random.Random,
        changed: set[str] | None = None,
    ) -> None:
        self.member_id = member_id
        # The table's set of members whose view must be rebuilt (see HealthTable.views).
        self._changed = changed if changed is not None else set()
        self._s = settings
        self._clock = clock
        self._rng = rng
        self.state = HealthState.unknown
        self.ad: StatusAd | None = None
        self.last_poll_ok: bool | None = None
        self.last_error: str | None = None
        self._ok_streak = 0
        self._fail_streak = 0
        self.next_poll_at = clock.now()  # a new member is polled at once
        self._launch_fail_streak = 0
        self._ejections = 0
        self.ejected = False
        self.ejected_until: float | None = None
        self.success_rate = 1.0  # neutral until launches say otherwise
        self.ready_seconds: float | None = None
        self.recent_launches = 0
        self.last_poll_at: float | None = None
        self._outcomes: deque[tuple[float, str]] = deque(maxlen=RECENT_OUTCOMES)
        self._canary = CanaryHealth(settings.ewma_alpha)

    # -- polls -----------------------------------------------------------------
    def record_poll(self, ad: StatusAd | None, error: str | None = None) -> None:
        """Feed one poll result: a verified ad (healthy or not), or ``error`` when the poll failed."""
        now = self._clock.now()
        self._changed.add(self.member_id)
        self.last_poll_at = now
        never_answered = self.ad is None
        if ad is not None:
            if self.ad is None or ad.issued_at >= self.ad.issued_at:
                self.ad = ad
                # The new ad's capacity already counts launches sent before it was issued.
                self.recent_launches = 0
        passed = ad is not None and ad.healthy
        self.last_poll_ok = passed
        self.last_error = None if passed else (error or unhealthy_reason(ad))
        if passed:
            self._ok_streak, self._fail_streak = self._ok_streak + 1, 0
        else:
            self._ok_streak, self._fail_streak = 0, self._fail_streak + 1
        self._apply_hysteresis(passed, never_answered)
        if passed and self.ejected and self.ejected_until is not None and now >= self.ejected_until:
            self.ejected, self.ejected_until, self._launch_fail_streak = False, None, 0
        self.next_poll_at = now + self._interval()

    def _apply_hysteresis(self, passed: bool, never_answered: bool) -> None:
        # The first answer decides at once: a broker that just started, or a member that just
        # enrolled and came up, should route without waiting several intervals. After that,
        # flips need consecutive evidence.
        if self.state is HealthState.unknown or (never_answered and passed):
            self.state = HealthState.healthy if passed else HealthState.unhealthy
        elif self.state is HealthState.healthy and self._fail_streak >= self._s.unhealthy_after:
            self.state = HealthState.unhealthy
        elif self.state is HealthState.unhealthy and self._ok_streak >= self._s.healthy_after:
            self.state = HealthState.healthy

    def _interval(self) -> float:
        base = self._s.unhealthy_interval if self.state is HealthState.unhealthy else self._s.interval
        if self.ad is None:
            # Never answered: usually a member that enrolled and is still starting, so
            # retry on a short doubling back-off (1, 2, 4 ... s) before the slow interval.
            base = min(base, 2.0 ** min(max(self._fail_streak - 1, 0), 10))
        # Jitter spreads polls so members restarted together are not polled in lockstep.
        return base * (1.0 + self._s.jitter * (2.0 * self._rng.random() - 1.0))

    def due(self) -> bool:
        return self._clock.now() >= self.next_poll_at

    def ad_expired(self) -> bool:
        return self.ad is None or self.ad.expires_at <= self._clock.now()

    # -- launches ----------------------------------------------------------------
    def record_launch_started(self) -> None:
        self._changed.add(self.member_id)
        self.recent_launches += 1

    def release_launch(self) -> None:
        """A launch counted as provisional load ended without a server (failed, refused, turned
        away, abandoned): it loads the member no more, even before the member's next ad."""
        self._changed.add(self.member_id)
        self.recent_launches = max(0, self.recent_launches - 1)

    def record_launch_success(self, seconds_to_ready: float) -> None:
        self._changed.add(self.member_id)
        a = self._s.ewma_alpha
        self.success_rate = (1 - a) * self.success_rate + a
        self.ready_seconds = seconds_to_ready if self.ready_seconds is None else (
            (1 - a) * self.ready_seconds + a * seconds_to_ready
        )
        self._launch_fail_streak = 0
        self._ejections = 0  # a good launch forgives earlier ejections
        self._outcomes.append((self._clock.now(), "ready"))

    def record_repo_error(self) -> None:
        """A launch that failed because of the repository: shown on the status page, no effect on health."""
        self._changed.add(self.member_id)
        self._outcomes.append((self._clock.now(), "repo_error"))

    def record_launch_failure(self) -> None:
        """A launch that failed because of the member (not because of the repo)."""
        self._changed.add(self.member_id)
        a = self._s.ewma_alpha
        self.success_rate = (1 - a) * self.success_rate
        self._launch_fail_streak += 1
        self._outcomes.append((self._clock.now(), "failed"))
        if not self.ejected and self._launch_fail_streak >= self._s.eject_after_failures:
            hold = min(self._s.eject_base * 2 ** self._ejections, self._s.eject_max)
            self.ejected, self.ejected_until = True, self._clock.now() + hold
            self._ejections += 1

    # -- canaries (the runner in launch/ calls these; the decisions are fedbroker.canary's) ---------
    def record_canary(self, result: CanaryResult, eject_after: int) -> None:
        self._changed.add(self.member_id)
        self._canary.record(result, eject_after)

    def canary_started(self) -> None:
        self._changed.add(self.member_id)
        self._canary.started(self._clock.now())

    def canary_stopped(self) -> None:
        self._changed.add(self.member_id)
        self._canary.stopped(self._clock.now())

    def reserve_canary_slot(self, on: bool) -> None:
        if on != self._canary.reserved:
            self._changed.add(self.member_id)
            self._canary.reserve(on)

    def canaries_turned_off(self) -> None:
        """An admin turned canaries off for the member: free the slot and lift a canary ejection."""
        if self._canary.reserved or self._canary.ejected or self._canary.failures:
            self._changed.add(self.member_id)
            self._canary.reserve(False)
            self._canary.lift()

    def canary_view(self) -> CanaryView:
        return self._canary.view(self.ad)

    def view(self) -> HealthView:
        return HealthView(
            member_id=self.member_id,
            state=self.state,
            ad=self.ad,
            ad_expired=self.ad_expired(),
            last_poll_ok=self.last_poll_ok,
            last_error=self.last_error,
            ejected=self.ejected,
            ejected_until=self.ejected_until,
            success_rate=self.success_rate,
            ready_seconds=self.ready_seconds,
            recent_launches=self.recent_launches,
            last_poll_at=self.last_poll_at,
            outcomes=tuple(self._outcomes),
            canary=self._canary.view(self.ad),
        )


class HealthTable:
    """The health of every known member, keyed by member id; follows the registry's member set."""

    def __init__(self, settings: HealthSettings, clock: Clock, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._members: dict[str, MemberHealth] = {}
        # Views are cached between changes: routing reads every member's view on every
        # launch, and rebuilding 1,000 of them per request dominated a decision. A view is
        # rebuilt when its member recorded something, or when time passes its ad's expiry.
        self._changed: set[str] = set()
        self._views: dict[str, HealthView] = {}
        self._expiry_floor = float("inf")  # earliest expires_at among cached unexpired ads
        self._live: Mapping[str, HealthView] = MappingProxyType(self._views)
        self._proxy: Mapping[str, HealthView] | None = None  # a frozen copy for views(), until a change
        # Readers that keep per-member state (the routing index): see ``watch``.
        self._watchers: list[set[str]] = []

    def sync(self, member_ids: Iterable[str]) -> None:
        """Add state for new members and forget removed ones (their soft state goes with them)."""
        wanted = set(member_ids)
        for gone in set(self._members) - wanted:
            del self._members[gone]
            self._changed.add(gone)
        for new in wanted - set(self._members):
            self._members[new] = MemberHealth(new, self._settings, self._clock, self._rng, self._changed)
            self._changed.add(new)

    def get(self, member_id: str) -> MemberHealth | None:
        return self._members.get(member_id)

    def member(self, member_id: str) -> MemberHealth:
        """The member's state, created on first use (a launch may finish after a sync removed it)."""
        if member_id not in self._members:
            self._members[member_id] = MemberHealth(member_id, self._settings, self._clock, self._rng, self._changed)
            self._changed.add(member_id)
        return self._members[member_id]

    def ids(self) -> list[str]:
        return sorted(self._members)

    def due(self) -> list[str]:
        return sorted(m for m, h in self._members.items() if h.due())

    def next_due_at(self) -> float | None:
        return min((h.next_poll_at for h in self._members.values()), default=None)

    def views(self) -> Mapping[str, HealthView]:
        """Every member's current view, read-only. The same mapping object comes back until
        something changes (copy-on-write), so routing can tell "nothing changed" by identity, and
        a caller may keep it across awaits: it never changes under it."""
        self.refresh()
        if self._proxy is None:
            self._proxy = MappingProxyType(dict(self._views))
        return self._proxy

    def view(self, member_id: str) -> HealthView | None:
        """One member's current view, without the copy :meth:`views` makes after each change (a
        busy front door changes a view with every launch; copying 10,000 views per launch cost
        more than the decision)."""
        self.refresh()
        return self._views.get(member_id)

    def live(self) -> Mapping[str, HealthView]:
        """The current views as they are kept: read and drop it before anything else runs (it changes
        with the next :meth:`refresh`). For the routing index, which reads the few members a
        watch names, synchronously."""
        self.refresh()
        return self._live

    def refresh(self) -> None:
        """Rebuild the views of the members that recorded something or whose ad expired since, and
        tell the watchers which."""
        expired = self._clock.now() >= self._expiry_floor
        if not self._changed and not expired:
            return
        views = self._views
        changed = set(self._changed)
        self._changed.clear()
        if expired:  # only the views whose ad expired since: an expiry is one member going silent
            now = self._clock.now()
            changed.update(m for m, v in views.items() if _expiry(v) <= now)
        for m in changed:
            member = self._members.get(m)
            if member is None:
                views.pop(m, None)
            else:
                views[m] = member.view()
                # A later expiry than before only makes the floor early (a harmless refresh).
                self._expiry_floor = min(self._expiry_floor, _expiry(views[m]))
        if expired:
            self._expiry_floor = min(map(_expiry, views.values()), default=_NEVER)
        if changed:
            self._proxy = None
        for watcher in self._watchers:
            watcher.update(changed)

    def watch(self) -> set[str]:
        """A set into which every :meth:`views` call adds the members whose view it changed; the
        reader empties it after reading. It starts with every member (all are new to the reader)."""
        watcher = set(self._members) | set(self._views)
        self._watchers.append(watcher)
        return watcher


_NEVER = float("inf")


def _expiry(view: HealthView) -> float:
    """When this view goes stale by time alone: its ad's expiry, unless already expired or absent."""
    return view.ad.expires_at if view.ad is not None and not view.ad_expired else _NEVER


def unhealthy_reason(ad: StatusAd | None) -> str:
    """Why a member says it is unhealthy, in its failing checks' words (e.g. "BinderHub at ... did not
    answer within 3 s"), so the status page names the part that is down rather than the agent."""
    failing = [c for c in (ad.checks if ad is not None else []) if not c.ok]
    if not failing:
        return "member reports itself unhealthy"
    parts = []
    for check in failing[:3]:
        detail = check.detail.get("error") or check.detail.get("message")
        parts.append(str(detail)[:200] if detail else f"{check.service} check failing")
    return "; ".join(parts)
