"""Canary decisions (pure, no I/O): when each member's next canary is due, and what results mean for health.

The runner (:mod:`fedbroker.launch.canary`) does the launching; everything it decides with goes
through here, with time from an injected clock and jitter from an injected ``random.Random``:

* :class:`CanarySchedule`: one canary per member every ``interval`` (spread by ``jitter``),
  sooner (``retry_interval``) after a failure so a fault is confirmed, and a fix seen, quickly;
* :class:`CanaryHealth`: a member's canary history (the last :data:`HISTORY` results), its streak of
  failures (``eject_after`` in a row eject it; the next passing canary re-admits it), the smoothed
  time-to-ready that routing prices, and the canary's reserved capacity slot.

The slot: for a member it canaries, the broker keeps one slot of the member's advertised capacity
for the canary. User routing sees ``total - 1`` slots, and a running canary's server (which the
member counts in ``used``/``building`` like any launch) is taken back out of the member's user
load in every ad issued while the canary ran.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Iterable

from fedproto.canary import CanaryResult
from fedproto.clock import Clock
from fedproto.status import StatusAd

HISTORY = 24  # results kept per member: the status page's strip
MIN_CAPACITY = 2  # a member needs this many slots to give one to a canary and keep one for users


def canary_applies(wanted: bool, ad: StatusAd | None) -> bool:
    """Whether the broker canaries a member: on for it in the registry, with an ad showing room for a
    canary slot beside at least one user slot."""
    return wanted and ad is not None and ad.capacity.total >= MIN_CAPACITY


@dataclass(frozen=True)
class CanaryView:
    """An immutable reading of one member's canaries, part of its :class:`~fedbroker.health.HealthView`."""

    history: tuple[CanaryResult, ...] = ()  # oldest first
    failures: int = 0  # consecutive failed canaries
    ejected: bool = False
    launch_seconds: float | None = None  # smoothed launch part of time-to-ready (what routing prices)
    build_seconds: float | None = None  # smoothed build part
    reserved: bool = False  # one slot of the member's capacity is the canary's
    busy: bool = False  # the member's last ad counts a canary's server

    @property
    def last(self) -> CanaryResult | None:
        return self.history[-1] if self.history else None

    @property
    def ready_seconds(self) -> float | None:
        """The time-to-ready routing prices: the launch part (builds are the image part's business)."""
        return self.launch_seconds


class CanaryHealth:
    """One member's canary state; the runner feeds it and :meth:`view` is what routing and pages read."""

    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self._history: deque[CanaryResult] = deque(maxlen=HISTORY)
        self.failures = 0
        self.ejected = False
        self.launch_seconds: float | None = None
        self.build_seconds: float | None = None
        self.reserved = False
        self._started_at: float | None = None  # the last canary's start and stop (broker clock)
        self._stopped_at: float | None = None

    def reserve(self, on: bool) -> None:
        self.reserved = on

    def lift(self) -> None:
        """Forget the failure streak and any ejection: an admin turned canaries off for the member, so
        no canary will come to re-admit it (the history stays for the status page)."""
        self.failures, self.ejected = 0, False

    def started(self, now: float) -> None:
        self._started_at, self._stopped_at = now, None

    def stopped(self, now: float) -> None:
        self._stopped_at = now

    def counted_in(self, ad: StatusAd | None) -> bool:
        """Whether ``ad`` counts a canary's server: issued while the last canary ran (member clock
        against broker clock; both sides check request tokens with a few seconds' leeway already)."""
        start, stop = self._started_at, self._stopped_at
        return ad is not None and start is not None and ad.issued_at >= start and (stop is None or ad.issued_at < stop)

    def record(self, result: CanaryResult, eject_after: int) -> None:
        """One finished canary: a pass clears the streak and re-admits; ``eject_after`` failures eject."""
        self._history.append(result)
        if result.ok:
            self.failures, self.ejected = 0, False
            self.launch_seconds = self._smooth(self.launch_seconds, result.launch_seconds)
            self.build_seconds = self._smooth(self.build_seconds, result.build_seconds)
        else:
            self.failures += 1
            self.ejected = self.ejected or self.failures >= eject_after

    def _smooth(self, old: float | None, new: float | None) -> float | None:
        if new is None:
            return old
        return new if old is None else (1 - self._alpha) * old + self._alpha * new

    def view(self, ad: StatusAd | None) -> CanaryView:
        """The reading, with ``busy`` for the member's current ``ad``."""
        return CanaryView(
            history=tuple(self._history), failures=self.failures, ejected=self.ejected,
            launch_seconds=self.launch_seconds, build_seconds=self.build_seconds,
            reserved=self.reserved, busy=self.reserved and self.counted_in(ad),
        )


class CanarySchedule:
    """When each member's next canary is due; one at a time per member."""

    def __init__(self, interval: float, retry_interval: float, jitter: float, clock: Clock, rng: random.Random) -> None:
        self._interval = interval
        self._retry = retry_interval
        self._jitter = jitter
        self._clock = clock
        self._rng = rng
        self._next: dict[str, float] = {}
        self._running: dict[str, float] = {}  # member -> when its canary started

    def sync(self, member_ids: Iterable[str]) -> None:
        """Follow the set of canaried members. A new one gets its first canary within ``jitter x interval``,
        spread so that a broker (re)start does not launch on every member at the same instant."""
        wanted = set(member_ids)
        for gone in set(self._next) - wanted:
            del self._next[gone]
        now = self._clock.now()
        for new in sorted(wanted - set(self._next)):
            self._next[new] = now + self._interval * self._jitter * self._rng.random()

    def due(self) -> list[str]:
        """Members whose canary is due now and not already running."""
        now = self._clock.now()
        return sorted(m for m, at in self._next.items() if at <= now and m not in self._running)

    def start(self, member_id: str) -> None:
        self._running[member_id] = self._clock.now()

    def finish(self, member_id: str, ok: bool | None) -> None:
        """The canary ended. Passed: the next one ``interval`` after this one started (so a slow launch
        does not stretch the interval; at once if it took longer). Failed or skipped (``ok`` None):
        ``retry_interval`` after its end, to confirm or clear it. Each spread by ``jitter``."""
        started = self._running.pop(member_id, self._clock.now())
        if member_id not in self._next:
            return  # left the canaried set meanwhile
        spread = 1.0 + self._jitter * (2.0 * self._rng.random() - 1.0)
        if ok:
            self._next[member_id] = max(self._clock.now(), started + self._interval * spread)
        else:
            self._next[member_id] = self._clock.now() + min(self._retry, self._interval) * spread

    def next_due_at(self) -> float | None:
        return min((at for m, at in self._next.items() if m not in self._running), default=None)

    def running(self) -> frozenset[str]:
        return frozenset(self._running)
