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


def _unit(digest: bytes) -> float:
    """The first 64 bits of a SHA-256 digest as a number in the open interval (0, 1)."""
    return (int.from_bytes(digest[:8], "big") + 0.5) / _SCALE


def unit_hash(key: str, member_id: str) -> float:
    """A deterministic number in the open interval (0, 1) for the pair."""
    return _unit(hashlib.sha256(f"{key}\x00{member_id}".encode()).digest())


def score(key: str, member_id: str, weight: float) -> float:
    """The member's score for ``key``; higher wins. A weight of 0 never wins."""
    if weight <= 0:
        return -math.inf
    return -weight / math.log(unit_hash(key, member_id))


def order(key: str, weights: Mapping[str, float]) -> list[str]:
    """Member ids by descending score for ``key`` (ties broken by id, so the order is total).

    The same as sorting by ``(-score(key, m, w), m)``, with the key's part of each hash digested
    once: a launch of a repo several members tie for hashes it against each of them (up to
    ``near_equal_max``), and this is a third cheaper per member. A test holds them equal."""
    if len(weights) <= 1:  # a lone member (the usual near-equal set of a small federation): no hash
        return list(weights)
    prefix = hashlib.sha256(f"{key}\x00".encode())
    keyed = []
    for m, w in weights.items():
        if w <= 0:
            keyed.append((math.inf, m))
            continue
        h = prefix.copy()
        h.update(m.encode())
        # -score = w / ln(u): negating a float is exact, so the order is the same bit for bit.
        keyed.append((w / math.log(_unit(h.digest())), m))
    keyed.sort()
    return [m for _, m in keyed]
