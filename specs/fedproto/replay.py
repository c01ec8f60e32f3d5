"""The replay cache: which token ids (``jti``) were already accepted, until they expire."""

from __future__ import annotations

import heapq

from .errors import TokenError


class ReplayCache:
    """Remembers accepted ``jti`` values until their token expires.

    Memory is bounded: past ``max_entries`` live ids, new tokens are refused
    (``replay_cache_full``) rather than forgetting an id early, because
    forgetting early would let a captured token be replayed.
    """

    def __init__(self, max_entries: int = 100_000, leeway: float = 5.0) -> None:
        self.max_entries = max_entries
        self.leeway = leeway
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            forget_at, jti = heapq.heappop(self._expiry)
            if self._seen.get(jti) == forget_at:
                del self._seen[jti]

    def check_and_add(self, jti: str, exp: float, now: float) -> None:
        """Accept ``jti`` once; raise :class:`TokenError` if seen before or the cache is full."""
        self._purge(now)
        if jti in self._seen:
            raise TokenError("token was already used (replay)", reason="replayed")
        if len(self._seen) >= self.max_entries:
            raise TokenError("too many live tokens; try again shortly", reason="replay_cache_full")
        forget_at = exp + self.leeway
        self._seen[jti] = forget_at
        heapq.heappush(self._expiry, (forget_at, jti))
