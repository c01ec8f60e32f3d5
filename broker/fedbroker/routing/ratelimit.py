"""Who the client is, and how much it may do: the per-client-IP launch rate limit (with
BinderHub's ``x-ratelimit-*`` headers), the enrollment rate limit, and open streams per client.

Like BinderHub's, each client's window starts at its first launch and lasts ``period``
seconds; within it at most ``launches`` launches pass. Time comes from an injected clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from fedproto.clock import Clock

from ..config import RateLimitSettings

# Expired windows are swept when the table grows past this, so memory stays bounded
# by the number of clients active in one period.
_SWEEP_AT = 10_000


def client_address(headers: Mapping[str, str], remote: str | None, header: str | None, trusted_proxies: int) -> str:
    """The client's address: the peer, or the forwarding header's hop that the nearest trusted proxy saw.

    Proxies append the address they received from, so with ``trusted_proxies`` proxies in
    front the client is the ``trusted_proxies``-th value from the right; everything left of it
    was written by the client and proves nothing (``X-Forwarded-For: spoofed, real`` names
    ``real`` with one proxy). With no header configured, or ``trusted_proxies`` 0, the peer.
    """
    if not header or trusted_proxies <= 0:
        return remote or "unknown"
    hops = [h.strip() for h in ",".join(headers.getall(header, []) if hasattr(headers, "getall")
                                        else [headers.get(header, "")]).split(",")]
    hops = [h for h in hops if h]
    if not hops:
        return remote or "unknown"
    # Fewer hops than proxies: a proxy was bypassed or wrote nothing; the leftmost is all there is.
    return hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]


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
    """Counts events per client IP in fixed windows that start at each client's first event."""

    def __init__(self, settings: RateLimitSettings, clock: Clock, *, limit: int | None = None,
                 period: float | None = None) -> None:
        self._limit = settings.launches if limit is None else limit
        self._period = settings.period if period is None else period
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # ip -> (window end, launches)

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def check(self, client_ip: str) -> RateDecision | None:
        """Count one launch from ``client_ip``; None when rate limiting is off."""
        if not self.enabled:
            return None
        now = self._clock.now()
        if len(self._windows) > _SWEEP_AT:
            self._windows = {ip: w for ip, w in self._windows.items() if w[0] > now}
        end, count = self._windows.get(client_ip, (0.0, 0))
        if end <= now:
            end, count = now + self._period, 0
        limit = self._limit
        allowed = count < limit
        if allowed:
            count += 1
        self._windows[client_ip] = (end, count)
        return RateDecision(allowed=allowed, limit=limit, remaining=max(0, limit - count), reset=int(math.ceil(end)))


class StreamSlots:
    """Open event streams per client address, at most ``limit`` each (0: no limit).

    One client must not hold hundreds of long /build streams (each a relay and a member
    launch) open at once; past the limit its next stream is refused with 429 until one ends.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def take(self, client: str) -> bool:
        """Claim a slot for ``client``; False when it already holds ``limit``."""
        held = self._open.get(client, 0)
        if self._limit and held >= self._limit:
            return False
        self._open[client] = held + 1
        return True

    def give_back(self, client: str) -> None:
        held = self._open.get(client, 0) - 1
        if held > 0:
            self._open[client] = held
        else:
            self._open.pop(client, None)

    def held(self, client: str) -> int:
        return self._open.get(client, 0)


@dataclass
class ClientLimits:
    """One app's per-client counters beside the launch limit: open streams and enrollment attempts."""

    streams: StreamSlots
    enrollments: RateLimiter

    @classmethod
    def of(cls, settings: RateLimitSettings, clock: Clock) -> ClientLimits:
        return cls(StreamSlots(settings.streams_per_client),
                   RateLimiter(settings, clock, limit=settings.enrollments, period=settings.enroll_period))
