"""The federation SLO (pure, no I/O): the share of launches that reached ``ready`` and their
time-to-ready percentiles, per member and overall, over the last hour and day.

Samples are user launches only (canaries are proven separately and never counted here):
per member, each attempt that ended ``ready`` or failed through the member's fault (a
repository's own error or a client that left says nothing about the member); overall, each
client launch, which reached ``ready`` or not after failover. Soft state in memory, like health:
each broker replica has its own, and a restart starts it empty (FEDERATION.md says why).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Iterable

from fedproto.canary import SloWindow
from fedproto.clock import Clock

WINDOWS: tuple[tuple[str, float], ...] = (("1h", 3600.0), ("24h", 86400.0))
OVERALL = "*"  # the key of client launches, beside member ids
MAX_SAMPLES = 20_000  # per key: bounds memory and the cost of a percentile on a busy day


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of values sorted ascending; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def window_stats(samples: Iterable[tuple[float, bool, float | None]], now: float, name: str, seconds: float) -> SloWindow:
    """The SLO of ``samples`` (time, reached ready, seconds to ready) that ended in the last ``seconds``."""
    since = now - seconds
    recent = [(ok, t) for at, ok, t in samples if at > since]
    times = sorted(t for ok, t in recent if ok and t is not None)
    ready = sum(1 for ok, _ in recent if ok)
    p50, p95 = percentile(times, 50), percentile(times, 95)
    return SloWindow(
        window=name,
        launches=len(recent),
        ready=ready,
        ready_share=round(ready / len(recent), 4) if recent else None,
        p50_time_to_ready=round(p50, 3) if p50 is not None else None,
        p95_time_to_ready=round(p95, 3) if p95 is not None else None,
    )


class SloTracker:
    """Launch outcomes by key (member id, or :data:`OVERALL`), the last day of them."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, bool, float | None]]] = {}

    def record(self, key: str, ok: bool, seconds: float | None = None) -> None:
        samples = self._samples.setdefault(key, deque(maxlen=MAX_SAMPLES))
        now = self._clock.now()
        samples.append((now, ok, seconds if ok else None))
        horizon = now - WINDOWS[-1][1]
        while samples and samples[0][0] <= horizon:
            samples.popleft()

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._samples.pop(key, None)

    def windows(self, key: str) -> list[SloWindow]:
        """The 1 h and 24 h windows of ``key`` (zero launches when nothing was recorded)."""
        samples = self._samples.get(key, ())
        now = self._clock.now()
        return [window_stats(samples, now, name, seconds) for name, seconds in WINDOWS]

    def keys(self) -> list[str]:
        return sorted(self._samples)
