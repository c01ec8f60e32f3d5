"""The status poller: the I/O loop that fetches each member's signed ad on the schedule health sets.

Which members are polled follows the registry snapshot (active and draining members; a
draining member is still watched so the status page is right, though routing skips it).
Polls run concurrently up to ``health.concurrency``, each bounded by ``health.timeout``.
The loop lives in a ``cleanup_ctx`` and is cancelled and awaited on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Callable

from fedproto.clock import Clock
from fedproto.member import MemberState
from fedproto.status import StatusAd

from ..config import HealthSettings
from ..registry.snapshot import MemberEntry, RegistrySnapshot, SnapshotHolder
from ..routing.claims import capped_ad
from ..routing.health import HealthTable
from .inflight import MemberTasks
from .memberclient import MemberCallError, MemberClient
from .schedule import PollSchedule

log = logging.getLogger(__name__)

POLLED_STATES = (MemberState.active, MemberState.draining)
# Upper bound on one idle wait, so a clock that jumps (or a fake one in a test) is noticed.
_MAX_IDLE = 1.0
# Shortest wait between rounds: with 1,000 members due at spread-out instants, waking for each
# (every ~10 ms) costs a loop turn per poll, and a lone poll finds the Ed25519 and JSON code and
# tables cold in the CPU caches. Rounds 0.5 s apart start ~50 polls together, whose signing and
# verifying then run back to back: bench_polling measured 15 % less CPU a poll than with 50 ms
# rounds. A poll starts at most 0.5 s late, which no member notices on a 10 s interval with
# +-20 % jitter; new members are still polled at once (the snapshot change wakes the loop).
_MIN_WAIT = 0.5


class Poller:
    """Polls due members, verifies their ads and feeds the health table."""

    def __init__(
        self,
        snapshots: SnapshotHolder,
        health: HealthTable,
        client: MemberClient,
        settings: HealthSettings,
        clock: Clock,
        *,
        owns: Callable[[str], bool] | None = None,
        on_result: Callable[[str, StatusAd | None, str | None], None] | None = None,
    ) -> None:
        """``owns`` (replicas sharing the polling, ``launch/pollshare.py``): whether this replica polls
        the member; the others' results arrive through the shared store. ``on_result`` sees every
        poll result this replica records (to publish it)."""
        self._owns = owns
        self._on_result = on_result
        self._snapshots = snapshots
        self._health = health
        self._client = client
        self._settings = settings
        self._clock = clock
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._wake = asyncio.Event()
        self._inflight = MemberTasks()
        self._schedule = PollSchedule(health)
        snapshots.subscribe(self._on_snapshot)
        self._sync(snapshots.current)

    def _on_snapshot(self, snapshot: RegistrySnapshot) -> None:
        self._sync(snapshot)
        self._wake.set()  # new members are polled at once, not at the next tick

    def _sync(self, snapshot: RegistrySnapshot) -> None:
        polled = [m.id for m in snapshot.in_states(*POLLED_STATES)]
        self._health.sync(polled)
        self._schedule.sync(polled, self._clock.now())
        self._client.forget_except(polled)

    def start_due(self) -> list[asyncio.Task[None]]:
        """Start a poll for every due member not already being polled."""
        snapshot = self._snapshots.current
        started = []
        for member_id in self._schedule.take_due(self._clock.now(), polling=self._inflight.__contains__,
                                                 owns=self._owns):
            if member_id not in snapshot.members:
                continue
            started.append(self._inflight.start(member_id, self.poll(snapshot.members[member_id]), f"poll-{member_id}"))
        return started

    async def poll_due(self) -> int:
        """Poll every member that is due now and wait for the answers; return how many were polled."""
        tasks = self.start_due()
        await asyncio.gather(*tasks)
        return len(tasks)

    async def poll(self, entry: MemberEntry) -> None:
        """Poll one member and record the result; never raises for a member's failure."""
        try:
            await self._poll(entry)
        finally:
            self._schedule.polled(entry.id)

    async def _poll(self, entry: MemberEntry) -> None:
        async with self._limit:
            try:
                ad = await self._client.status(entry, timeout=self._settings.timeout)
            except MemberCallError as exc:
                ad, error = None, exc.message
            except Exception:  # a bug must not kill the poll task unobserved
                log.exception("polling member %s failed unexpectedly", entry.id)
                ad, error = None, "internal error while polling"
            else:
                error = None
                cap = entry.record.max_capacity
                ad = capped_ad(ad, self._settings.max_member_capacity if cap is None else cap)
        state = self._health.get(entry.id)
        if state is None:  # removed from the registry while we polled
            return
        before = state.state
        state.record_poll(ad, error)
        if self._on_result is not None:
            self._on_result(entry.id, ad, error)
        if state.state is not before:
            log.info("member %s health %s -> %s%s", entry.id, before.value, state.state.value,
                     f" ({error})" if error else "")

    async def run(self) -> None:
        """Poll forever: wake at the earliest due time or when the snapshot changes."""
        try:
            while True:
                self._wake.clear()
                self.start_due()
                next_at = self._schedule.next_due_at()
                delay = _MAX_IDLE if next_at is None else min(_MAX_IDLE, max(_MIN_WAIT, next_at - self._clock.now()))
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel polls in flight and wait for them."""
        await self._inflight.cancel_all()
