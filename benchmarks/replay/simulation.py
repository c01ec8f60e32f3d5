"""The replay engine: a discrete-event loop over simulated time, driving one policy against the members.

Three kinds of event share one heap: a member's ad reaching the policy (every poll interval,
with the broker's jitter), a build finishing (its waiting launch's server starts) and a
session ending (its slot frees). Launches come from the trace in time order; before each,
every event due by then is handled, so the policy decides on exactly the information it would
have had. Nothing sleeps and nothing touches the network.
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from fedbroker.config import RoutingSettings

from .accounting import FAILED_ATTEMPT_SECONDS, REFUSED_ATTEMPT_SECONDS, Accounting, HourlyPeaks, Result
from .federation import MemberSpec
from .members import SimMember
from .policies import Policy, SimulatedClock, make_policy
from .targets import Target, TargetCache
from .trace import Launch

_POLL, _READY, _END = 0, 1, 2


@dataclass(frozen=True)
class ReplaySettings:
    """How the replay runs, apart from the federation and the policy."""

    seed: int = 1
    poll_interval: float = 10.0  # seconds between a member's ads reaching the broker
    poll_jitter: float = 0.2  # fraction of the interval, as the broker's health poller spreads polls
    max_attempts: int = 3  # members tried per launch; the broker's routing.max_attempts default
    min_hour_load: int = 50  # hours with a lower federation peak are not judged for fairness


class Replay:
    """One policy's replay of one trace against a fresh federation."""

    def __init__(
        self,
        federation: Sequence[MemberSpec],
        policy: str,
        settings: ReplaySettings = ReplaySettings(),
        routing: RoutingSettings | None = None,
    ) -> None:
        self._settings = settings
        self._federation = federation
        member_rng = random.Random(settings.seed)
        self.members = [SimMember(spec, i, member_rng) for i, spec in enumerate(federation)]
        self.clock = SimulatedClock()
        self.policy: Policy = make_policy(
            policy, federation, self.clock, seed=settings.seed,
            routing=routing or RoutingSettings(), poll_interval=settings.poll_interval,
            max_attempts=settings.max_attempts,
        )
        self.accounting = Accounting()
        self._targets = TargetCache(self.members)
        self._poll_rng = random.Random(settings.seed + 1)
        self._events: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._total = 0
        self._peaks: HourlyPeaks | None = None

    def _push(self, at: float, kind: int, member: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, member))

    def _next_poll(self, now: float) -> float:
        s = self._settings
        return now + s.poll_interval * (1.0 + s.poll_jitter * (2.0 * self._poll_rng.random() - 1.0))

    def _start(self, start: float) -> None:
        self._peaks = HourlyPeaks(len(self.members), start)
        self.clock.time = start
        for m in self.members:
            self.policy.published(m.index, start, 0, 0, m.published)
            self._push(self._next_poll(start), _POLL, m.index)

    def _handle(self, at: float, kind: int, m: int) -> None:
        member = self.members[m]
        if kind == _POLL:
            self.policy.published(m, at, member.used, member.building, member.published)
            self._push(self._next_poll(at), _POLL, m)
        elif kind == _READY:
            member.build_finished()
        else:
            member.session_ended()
            self._total -= 1

    def _until(self, now: float) -> None:
        """Handle every event due at or before ``now``, in time order."""
        events, peaks, clock = self._events, self._peaks, self.clock
        assert peaks is not None
        while events and events[0][0] <= now:
            at, _, kind, m = heapq.heappop(events)
            if at >= peaks.next_hour_at:
                peaks.advance(at, [x.occupied for x in self.members])
            clock.time = at
            self._handle(at, kind, m)
        if now >= peaks.next_hour_at:
            peaks.advance(now, [x.occupied for x in self.members])
        clock.time = now

    def run(self, launches: Iterable[Launch]) -> Result:
        """Replay every launch; the result covers the trace's span."""
        began, began_cpu = time.perf_counter(), time.process_time()
        for launch in launches:
            if self._peaks is None:
                self._start(launch.time)
            self._until(launch.time)
            target = self._targets.get(launch)
            for _ in range(launch.count):
                self._launch(target, launch.time)
        if self._peaks is None:
            self._start(0.0)
        assert self._peaks is not None
        self._peaks.finish()
        ratios = self._peaks.over_fair([m.weight for m in self._federation], self._settings.min_hour_load)
        return Result.of(
            self.policy.name, self.accounting, ratios, time.perf_counter() - began, time.process_time() - began_cpu
        )

    def _launch(self, target: Target, now: float) -> None:
        acc, policy = self.accounting, self.policy
        acc.launches += 1
        available = any(self.members[j].has_room() for j in target.storing)
        penalty, failures = 0.0, 0
        order = list(policy.choose(target, now))
        if available:
            acc.dataset_routed(bool(order) and order[0] in target.storing)
        for m in order[: self._settings.max_attempts]:
            member = self.members[m]
            acc.attempts += 1
            policy.sent(m)
            if not member.has_room():
                penalty += REFUSED_ATTEMPT_SECONDS
                continue
            if member.fails():
                penalty += FAILED_ATTEMPT_SECONDS
                failures += 1
                policy.finished(m, False, 0.0)
                continue
            self._land(target, member, now, penalty, available)
            return
        if failures:
            acc.failed += 1
        else:
            acc.refused += 1

    def _land(self, target: Target, member: SimMember, now: float, penalty: float, available: bool) -> None:
        acc = self.accounting
        start = member.start(target.repo_key, target.image, now)
        acc.builds += start.built
        server_at = start.ready_at + member.spec.launch_seconds
        ready = server_at - now + penalty
        acc.ready_seconds.append(ready)
        if start.waited_for_build:
            self._push(start.ready_at, _READY, member.index)
        self._push(server_at + member.session_seconds(), _END, member.index)
        self._total += 1
        assert self._peaks is not None
        self._peaks.raised(member.index, member.occupied, self._total)
        if target.datasets:
            acc.dataset_outcome(member.index in target.storing, available)
        self.policy.finished(member.index, True, ready)
