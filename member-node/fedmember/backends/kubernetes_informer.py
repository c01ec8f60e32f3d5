"""A watch-fed cache of one kind of object (an informer, as client-go calls it).

One LIST, then one long WATCH from the list's ``resourceVersion``; every event
updates the cache and wakes whoever waits on that object. When the watch ends
(the server's timeout, a dropped connection) it resumes from the last version
seen (bookmarks keep it fresh); a ``410 Gone`` answer means that version is too
old, and the informer lists again. So capacity, health and launch progress read
memory: no request per poll, no GET per second per starting pod.

Objects are kept as whatever ``parse`` makes of the raw JSON (the backend keeps
small frozen records, not the API's full objects), keyed by name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Generic, Protocol, TypeVar

from .kubernetes_client import KubeError

log = logging.getLogger(__name__)

T = TypeVar("T")
WATCH_SECONDS = 300  # the server ends each watch after this; resuming costs one request
RETRY_DELAYS = (0.5, 1, 2, 5, 10)


class Source(Protocol):
    """The two calls an informer makes (``KubeAPI`` has them)."""

    async def list(self, kind: str, label_selector: str = "") -> dict[str, Any]: ...

    def watch(self, kind: str, label_selector: str, resource_version: str, timeout_seconds: int) -> Any: ...


class Informer(Generic[T]):
    """The cache of ``kind`` objects matching ``selector``; ``run()`` keeps it current."""

    def __init__(self, source: Source, kind: str, selector: str, parse: Callable[[dict[str, Any]], T],
                 on_change: Callable[[str, T | None], None] | None = None, watch_seconds: int = WATCH_SECONDS) -> None:
        self.source = source
        self.kind = kind
        self.selector = selector
        self.parse = parse
        self.on_change = on_change
        self.watch_seconds = watch_seconds
        self.items: dict[str, T] = {}
        self.synced = asyncio.Event()
        self.error: str | None = None
        self.lists = 0  # how often it listed: once, plus once per 410
        self.events = 0
        self._version = ""
        self._waiters: dict[str, set[asyncio.Event]] = {}

    # -- readers ---------------------------------------------------------------------------
    def get(self, name: str) -> T | None:
        return self.items.get(name)

    async def changed(self, name: str, timeout: float) -> bool:
        """Wait until ``name`` changes (or appears, or goes); False on timeout."""
        event = asyncio.Event()
        self._waiters.setdefault(name, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[name]

    @property
    def healthy(self) -> bool:
        return self.synced.is_set() and self.error is None

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """List, then watch forever; errors are kept in ``error`` and retried with backoff."""
        failures = 0
        while True:
            try:
                if not self._version:
                    await self._relist()
                await self._watch()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the cache must outlive any bad answer: retry, relisting
                if isinstance(exc, KubeError) and exc.http_status == 410:
                    self._version = ""  # too old: list again, at once
                    continue
                if not isinstance(exc, KubeError):
                    log.exception("%s informer: unexpected answer", self.kind)
                    self._version = ""
                self.error = str(exc) or exc.__class__.__name__
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("%s informer: %s (retrying in %g s)", self.kind, exc, delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        answer = await self.source.list(self.kind, self.selector)
        self.lists += 1
        fresh = {item["metadata"]["name"]: item for item in answer.get("items") or []}
        for name in [n for n in self.items if n not in fresh]:
            self._apply("DELETED", name, None)
        for name, raw in fresh.items():
            self._apply("MODIFIED", name, raw)
        self._version = str(answer.get("metadata", {}).get("resourceVersion") or "")
        self.error = None
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.source.watch(self.kind, self.selector, self._version, self.watch_seconds):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                code = int(obj.get("code") or 0)
                raise KubeError(f"watch of {self.kind}: {obj.get('message', 'error')}", http_status=code)
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or "")
            if kind in ("ADDED", "MODIFIED", "DELETED") and meta.get("name"):
                self.events += 1
                self._apply(kind, meta["name"], obj)
            if version:
                self._version = version
            self.error = None

    def _apply(self, kind: str | None, name: str, raw: dict[str, Any] | None) -> None:
        if kind == "DELETED" or raw is None:
            if self.items.pop(name, None) is None:
                return
            value: T | None = None
        else:
            value = self.parse(raw)
            self.items[name] = value
        for event in self._waiters.get(name, ()):
            event.set()
        if self.on_change is not None:
            self.on_change(name, value)
