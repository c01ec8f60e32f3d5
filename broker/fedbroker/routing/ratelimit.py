"""The per-client-IP launch rate limit, with BinderHub's ``x-ratelimit-*`` headers.

Like BinderHub's, each client's window starts at its first launch and lasts ``period``
seconds; within it at most ``launches`` launches pass. Time comes from an injected clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedproto.clock import Clock

from ..config import RateLimitSettings

# Expired windows are swept when the table grows past this, so memory stays bounded
# by the number of clients active in one period.
_SWEEP_AT = 10_000


@dataclass(frozen=True)
class RateDecision:
    """Whether one launch may go ahead, and the numbers for the headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
        }

    def message(self, now: float) -> str:
        return f"Rate limit exceeded. Try again in {max(0, math.ceil(self.reset - now))} seconds.\n"


class RateLimiter:
    """Counts launches per client IP in fixed windows that start at each client's first launch."""

    def __init__(self, settings: RateLimitSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # ip -> (window end, launches)

    @property
    def enabled(self) -> bool:
        return self._settings.launches > 0

    def check(self, client_ip: str) -> RateDecision | None:
        """Count one launch from ``client_ip``; None when rate limiting is off."""
        if not self.enabled:
            return None
        now = self._clock.now()
        if len(self._windows) > _SWEEP_AT:
            self._windows = {ip: w for ip, w in self._windows.items() if w[0] > now}
        end, count = self._windows.get(client_ip, (0.0, 0))
        if end <= now:
            end, count = now + self._settings.period, 0
        limit = self._settings.launches
        allowed = count < limit
        if allowed:
            count += 1
        self._windows[client_ip] = (end, count)
        return RateDecision(allowed=allowed, limit=limit, remaining=max(0, limit - count), reset=int(math.ceil(end)))
