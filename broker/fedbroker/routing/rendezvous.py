"""Weighted rendezvous (highest-random-weight) hashing: a stable, weighted choice per key.

Every (key, member) pair gets a pseudo-random score; the member with the highest score
wins. Adding or removing a member only moves the keys that member wins or held, so a
repo keeps landing where its image is cached. Weights follow the logarithmic method
(score = -w / ln(u)), under which a member of weight 2 wins twice as many keys as one of
weight 1 — the same scheme mybinder.org's federation-redirect uses.
"""

from __future__ import annotations

import hashlib
import math
from typing import Mapping

_SCALE = float(2**64)


def unit_hash(key: str, member_id: str) -> float:
    """A deterministic number in the open interval (0, 1) for the pair."""
    digest = hashlib.sha256(f"{key}\x00{member_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / _SCALE


def score(key: str, member_id: str, weight: float) -> float:
    """The member's score for ``key``; higher wins. A weight of 0 never wins."""
    if weight <= 0:
        return -math.inf
    return -weight / math.log(unit_hash(key, member_id))


def order(key: str, weights: Mapping[str, float]) -> list[str]:
    """Member ids by descending score for ``key`` (ties broken by id, so the order is total)."""
    return sorted(weights, key=lambda m: (-score(key, m, weights[m]), m))
