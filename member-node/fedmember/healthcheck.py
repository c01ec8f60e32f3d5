"""The agent's health: the backend's checks, cached briefly, in BinderHub's ``/health`` shape."""

from __future__ import annotations

import asyncio
import logging

from fedproto.clock import Clock
from fedproto.status import HealthCheck

from .backends.base import Backend

log = logging.getLogger(__name__)


class HealthService:
    """Runs the backend's checks at most once per ``cache_seconds`` (as BinderHub caches them).

    A check that raises or hangs counts as a failed ``Backend`` check instead of
    failing the request: ``/health`` must always answer.
    """

    def __init__(self, backend: Backend, clock: Clock, *, cache_seconds: float = 2.0, timeout: float = 10.0) -> None:
        self.backend = backend
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._cached: list[HealthCheck] | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def checks(self) -> list[HealthCheck]:
        async with self._lock:  # one probe at a time; concurrent callers share its result
            now = self.clock.now()
            if self._cached is not None and now - self._cached_at < self.cache_seconds:
                return self._cached
            self._cached = await self._probe()
            self._cached_at = self.clock.now()
            return self._cached

    async def _probe(self) -> list[HealthCheck]:
        try:
            return list(await asyncio.wait_for(self.backend.health(), self.timeout))
        except TimeoutError:
            return [HealthCheck(service="Backend", ok=False, detail={"error": "health check timed out"})]
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed check
            log.warning("backend health check failed: %r", exc)
            return [HealthCheck(service="Backend", ok=False, detail={"error": type(exc).__name__})]

    @staticmethod
    def ok(checks: list[HealthCheck]) -> bool:
        return all(c.ok for c in checks)

    def render(self, checks: list[HealthCheck]) -> dict[str, object]:
        return {"ok": self.ok(checks), "checks": [c.model_dump(mode="json") for c in checks]}
