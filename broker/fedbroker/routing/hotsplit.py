"""The routing index's members split by one hot rule: those surely hot now, and the others in base order.

A decision puts hot members (``facts.is_hot``: above a multiple of their weight's share of the
federation's sessions) after every cool one, so it only needs cool members unless fewer than it
lists are cool. Scanning all members in base order and skipping the hot ones was what made a busy
front door slow: base order ranks large members first (their share of capacity used is low), yet
under the new-repo rule (hot above 1x the share) about half the members are hot at any time, and
large ones most often, so a decision priced a couple of hundred members to find ten cool ones.

Whether a member is hot moves with every launch anywhere (the federation's totals), but by
``facts.hot_until`` it is hot exactly while the federation's sessions per unit of weight stay
below a number that depends on that member alone. So this keeps the cool members in base-ordered
lists (one per list of the index) and the hot ones in a set, with two heaps of those numbers to
move, at each decision, only the members that crossed since the last (a few, not all of them).

The split is a filter and never the judge: a member goes to the hot side only when its number is
above the current ratio by a margin (floating point may round the same comparison in ``is_hot``
the other way at the edge), so every member ``is_hot`` calls cool is on a cool list, and the index
still prices each member it reaches with ``is_hot`` itself. Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from typing import Generic, Hashable, TypeVar

# A member is put on the hot side only while the ratio is below its number by this much (relative):
# far above the rounding of a few float operations, far below any real difference in load.
_MARGIN = 1e-7
K = TypeVar("K", bound=Hashable)  # which of the index's lists a member is on


def _lowered(until: float) -> float:
    return until - _MARGIN * abs(until) - _MARGIN if until not in (float("inf"), float("-inf")) else until


class HotSplit(Generic[K]):
    """Listed members, for one hot rule: ``cool`` lists in base order, and the ``hot`` set."""

    def __init__(self) -> None:
        self.cool: dict[K, list[tuple[float, str]]] = {}
        self.hot: set[str] = set()
        self._at: dict[str, tuple[K, float, float]] = {}  # member -> (its list, base, lowered hot_until)
        self._ratio = float("inf")  # sessions per unit of weight at the last place() or advance()
        # Lazy heaps: an entry is live while it matches the member's _at and side; stale ones are skipped.
        self._cooling: list[tuple[float, str]] = []  # hot members: cool once the ratio reaches the number
        self._heating: list[tuple[float, str]] = []  # cool members, by minus the number: hot while below it

    def __len__(self) -> int:
        return len(self._at)

    def place(self, member_id: str, key: K, base: float, until: float) -> None:
        """Add a listed member (remove it first if it was placed): its list, base and ``hot_until``."""
        self.remove(member_id)
        until = _lowered(until)
        self._at[member_id] = (key, base, until)
        if self._ratio < until:
            self.hot.add(member_id)
            heapq.heappush(self._cooling, (until, member_id))
        else:
            insort(self.cool.setdefault(key, []), (base, member_id))
            if until > float("-inf"):
                heapq.heappush(self._heating, (-until, member_id))
        self._compact()

    def remove(self, member_id: str) -> None:
        at = self._at.pop(member_id, None)
        if at is None:
            return
        if member_id in self.hot:
            self.hot.discard(member_id)
        else:
            ordered = self.cool[at[0]]
            del ordered[bisect_left(ordered, (at[1], member_id))]

    def advance(self, ratio: float) -> None:
        """Move the members that crossed their number since the last call, for the federation's
        sessions per unit of weight now (``inf`` when nothing counts: nobody is hot)."""
        self._ratio = ratio
        cooling, heating = self._cooling, self._heating
        while cooling and cooling[0][0] <= ratio:
            until, m = heapq.heappop(cooling)
            at = self._at.get(m)
            if at is not None and at[2] == until and m in self.hot:
                self.hot.discard(m)
                insort(self.cool.setdefault(at[0], []), (at[1], m))
                heapq.heappush(heating, (-until, m))
        while heating and -heating[0][0] > ratio:
            minus, m = heapq.heappop(heating)
            at = self._at.get(m)
            if at is not None and at[2] == -minus and m not in self.hot:
                ordered = self.cool[at[0]]
                del ordered[bisect_left(ordered, (at[1], m))]
                self.hot.add(m)
                heapq.heappush(cooling, (-minus, m))

    def _compact(self) -> None:
        """Drop stale heap entries once they outnumber the live ones (every placement leaves one)."""
        if len(self._cooling) + len(self._heating) <= 4 * len(self._at) + 64:
            return
        self._cooling = [(u, m) for m, (_, _, u) in self._at.items() if m in self.hot]
        self._heating = [(-u, m) for m, (_, _, u) in self._at.items() if m not in self.hot and u > float("-inf")]
        heapq.heapify(self._cooling)
        heapq.heapify(self._heating)
