"""Replicas sharing the health polling: each member is polled by one replica, and every replica
records every result.

Replicas on one database each renew a lease (``broker_replicas``) every ``poll_lease / 3``
seconds; the live ones split the members by rendezvous hash of the member id over the live
replica ids, so each member has one poller, and a member moves only when its poller joins or
leaves. The poller publishes each result (the ad it verified, or the error) to
``member_polls``; every ``poll_sync`` seconds each replica publishes its own and records the
others' into its health table, so every replica routes on every member's health within about
``poll_sync`` of a poll. A replica that stops renewing loses its members to the others once its
lease (``poll_lease``, well under the poll interval) runs out; a clean shutdown gives them up at
once. Ads are verified once, by the replica that polled; the database is trusted as the registry is.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from fedproto.clock import Clock
from fedproto.status import StatusAd

from ..config import HealthSettings
from ..registry.pollstore import PollRow, PollStore
from ..routing import rendezvous
from ..routing.health import HealthTable

log = logging.getLogger(__name__)


class PollSharing:
    """This replica's lease, its share of the members, and the exchange of poll results."""

    def __init__(self, store: PollStore, health: HealthTable, settings: HealthSettings, clock: Clock,
                 replica_id: str | None = None) -> None:
        self.replica_id = replica_id or secrets.token_hex(8)
        self._store = store
        self._health = health
        self._settings = settings
        self._clock = clock
        self._live: tuple[str, ...] = (self.replica_id,)
        self._owned: dict[str, bool] = {}  # member -> whether this replica polls it, for self._live
        self._outbox: dict[str, PollRow] = {}
        self._seq = 0
        self._beat_at = float("-inf")

    def owns(self, member_id: str) -> bool:
        """Whether this replica polls ``member_id`` (the top of the member's rendezvous order)."""
        mine = self._owned.get(member_id)
        if mine is None:
            if len(self._live) == 1:
                mine = self._live[0] == self.replica_id
            else:
                mine = rendezvous.order(member_id, {r: 1.0 for r in self._live})[0] == self.replica_id
            self._owned[member_id] = mine
        return mine

    def published(self, member_id: str, ad: StatusAd | None, error: str | None) -> None:
        """A result this replica recorded; sent with the next exchange (only the latest per member)."""
        self._outbox[member_id] = PollRow(member_id=member_id, polled_at=self._clock.now(),
                                          ad_json=ad.model_dump_json() if ad is not None else None, error=error)

    async def exchange(self) -> int:
        """Renew the lease when due, publish this replica's results, record the others'; return how
        many results of other replicas were recorded."""
        now = self._clock.now()
        if now - self._beat_at >= self._settings.poll_lease / 3:
            live = tuple(await self._store.heartbeat(self.replica_id, now, self._settings.poll_lease))
            self._beat_at = now
            if self.replica_id not in live:
                live = tuple(sorted((*live, self.replica_id)))
            if live != self._live:
                log.info("polling shared by %d replica(s): %s", len(live), ", ".join(live))
                self._live, self._owned = live, {}
        outbox, self._outbox = list(self._outbox.values()), {}
        await self._store.publish(self.replica_id, outbox)
        recorded = 0
        for row in await self._store.since(self._seq):
            self._seq = max(self._seq, row.seq)
            if row.replica_id == self.replica_id:
                continue
            state = self._health.get(row.member_id)
            if state is None:
                continue
            # received_json: a replica of a newer minor version may store fields this one does not know.
            ad = StatusAd.received_json(row.ad_json) if row.ad_json is not None else None
            state.record_poll(ad, row.error)
            recorded += 1
        return recorded

    async def run(self) -> None:
        """Exchange every ``poll_sync`` seconds until cancelled; then give up the lease."""
        try:
            while True:
                try:
                    await self.exchange()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a database blip: keep polling what we own, retry next time
                    log.warning("sharing poll results failed: %s", type(exc).__name__)
                await asyncio.sleep(self._settings.poll_sync)
        finally:
            try:
                await asyncio.shield(self._store.leave(self.replica_id))
            except Exception:  # the lease runs out on its own
                pass
