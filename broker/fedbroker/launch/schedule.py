"""When each member is next polled: a heap of due times, so a round costs the members due, not all.

The poller woke 20 times a second and scanned all 1,000 members twice per wake (which are due,
and when the next one is): a tenth of polling's CPU at 1,000 members, growing with the
federation. Here a wake pops only the entries whose time has come.

Entries are hints, checked when popped against the member's own ``next_poll_at`` (its health
state machine stays the one place that sets it): an entry that is early (the time moved, e.g. a
result shared by another replica) is put back at the member's real time; one for a member gone
from the registry is dropped. A member being polled is dropped too: its poll puts it back with
its next time when it ends (:meth:`PollSchedule.polled`). So each polled member keeps at least one
entry, and nothing needs removing from the middle of the heap.
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterable

from ..routing.health import HealthTable

# A member another replica owns is looked at again this often: ownership moves with leases,
# and a dead replica's members must pass to this one within an interval.
NOT_OWNED_RECHECK = 1.0


class PollSchedule:
    """Due times of the members this replica may poll. Pure: the caller passes ``now``."""

    def __init__(self, health: HealthTable) -> None:
        self._health = health
        self._heap: list[tuple[float, str]] = []
        self._known: set[str] = set()

    def sync(self, member_ids: Iterable[str], now: float) -> None:
        """Schedule members new to the schedule at once; the removed ones drop out when popped."""
        wanted = set(member_ids)
        for member_id in wanted - self._known:
            heapq.heappush(self._heap, (now, member_id))
        self._known = wanted

    def polled(self, member_id: str) -> None:
        """A poll ended: schedule the member's next one, at the time its health state set."""
        state = self._health.get(member_id)
        if state is not None and member_id in self._known:
            heapq.heappush(self._heap, (state.next_poll_at, member_id))

    def take_due(self, now: float, *, polling: Callable[[str], bool],
                 owns: Callable[[str], bool] | None = None) -> list[str]:
        """The members to poll now, in due order. ``polling``: whether a poll of it is in flight."""
        due: dict[str, None] = {}  # ordered, and a member twice in the heap is polled once
        later: list[tuple[float, str]] = []
        while self._heap and self._heap[0][0] <= now:
            _, member_id = heapq.heappop(self._heap)
            state = self._health.get(member_id)
            if member_id not in self._known or state is None or polling(member_id):
                continue  # gone, or its poll in flight puts it back when it ends
            if state.next_poll_at > now:
                later.append((state.next_poll_at, member_id))
            elif owns is not None and not owns(member_id):
                later.append((now + NOT_OWNED_RECHECK, member_id))
            else:
                due[member_id] = None
        for entry in later:
            heapq.heappush(self._heap, entry)
        return list(due)

    def next_due_at(self) -> float | None:
        """The earliest time any entry comes due (it may prove early when popped)."""
        return self._heap[0][0] if self._heap else None
