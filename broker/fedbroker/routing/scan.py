"""One routing-index decision in progress: the members priced so far, and the base-ordered streams of
those not yet seen, merged by lower bound (see :mod:`fedbroker.routing.index`). Pure, no I/O.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .facts import MemberFacts
from .rank import _Context as Context

__all__ = ["ListKey", "Scan", "Stream", "TOLERANCE", "group_of"]

TOLERANCE = 0.002  # totals are rounded to 3 decimals; lower bounds stay this far below
ListKey = tuple[str | None, bool]  # (region, has a ready history)


@dataclass
class Stream:
    """Members in ascending (base, id) order; base plus ``offset`` bounds the total of each from below."""

    items: list[tuple[float, str]]
    offset: float
    pos: int = 0

    def head(self, i: int) -> tuple[float, str, int]:
        """The next member's heap entry: (bound, member, stream index ``i``)."""
        base, m = self.items[self.pos]
        return round(base + self.offset, 3), m, i


@dataclass
class Scan:
    """One decision's candidates so far (each priced once) and where the base-order scan stands."""

    ctx: Context
    facts: dict[str, MemberFacts] = field(default_factory=dict)
    data: dict[str, float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    hot: dict[str, float] = field(default_factory=dict)
    streams: list[Stream] = field(default_factory=list)
    heap: list[tuple[float, str, int]] = field(default_factory=list)  # (stream head's bound, its member, stream index)
    exhausted: bool = False
    new_repo: bool = False  # no member holds or is building the image (facts.is_hot)
    # The streams hold the cool members only (HotSplit) until they run out; then every member.
    holders: set[str] | None = None
    build: float = 0.0
    widened: bool = False
    # What (bound, member) every unseen member must come after for the order to be final.
    need: tuple[float, str] | None = None
    # Whether a stream's bound is an unseen member's very total: no data to price (it would add
    # rounded fetch costs) and no client coordinates (distance is not in the bound), and no dense
    # holders (then the streams leave the build out). Members of equal cost are then ordered by id
    # as rank orders them, and the scan can stop inside a run of equal costs instead of pricing it all.
    exact: bool = False

    def unseen_from(self) -> tuple[float, str]:
        """Every unseen member's (total, id) is at least this (with ``exact``; else its total is
        above the first number, and an equal total with any id counts as possibly earlier)."""
        if not self.heap:
            return (float("inf"), "")
        bound, m, _ = self.heap[0]
        if self.exact:
            return (bound, m)
        return (bound + sum(self.ctx.fetch.values()) - TOLERANCE, "")

    def pop(self) -> tuple[float, str] | None:
        """The member with the lowest bound left in any stream, with that bound."""
        if not self.heap:
            return None
        bound, m, i = self.heap[0]
        stream = self.streams[i]
        stream.pos += 1
        if stream.pos < len(stream.items):
            heapq.heapreplace(self.heap, stream.head(i))
        else:
            heapq.heappop(self.heap)
        return bound, m


def group_of(chosen: Mapping[str, MemberFacts], local: frozenset[str] | None,
              hot: Mapping[str, float]) -> Callable[[str], int]:
    """A candidate's group in ``routing._order``: (suspect tier, data tier) then hot after cool, as one int."""
    def group(m: str) -> int:
        tier = (2 if chosen[m].suspect > 0 else 0) + (0 if local is None or m in local else 1)
        return tier * 2 + (1 if m in hot else 0)
    return group
