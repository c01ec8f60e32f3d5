"""The registry service: the store plus the in-memory snapshot that routing reads, kept fresh.

A change made through this process refreshes the snapshot as soon as it is
committed; a change made by another broker process on the same database is
noticed by polling the revision counter every ``snapshot_refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import AsyncIterator, Iterable

from fedproto.clock import Clock
from fedproto.errors import KeyMaterialError
from fedproto.keys import PublicKeySet
from fedproto.member import MemberRecord

from .datasetpolicy import DatasetPolicy, DatasetRule
from .snapshot import MemberEntry, RegistrySnapshot, SnapshotHolder
from .store import RegistryStore, Tx

log = logging.getLogger(__name__)


def build_snapshot(revision: int, records: list[MemberRecord], rules: Iterable[DatasetRule] = ()) -> RegistrySnapshot:
    """An immutable snapshot of ``records`` and the dataset declarations; a member whose keys
    do not parse is left out."""
    policy = DatasetPolicy.of(rules)
    holdings = policy.holdings()
    entries: dict[str, MemberEntry] = {}
    for record in records:
        try:
            keys = PublicKeySet.from_jwks(record.jwks)
        except KeyMaterialError as exc:  # cannot happen for rows written by this broker
            log.error("member %s left out of the snapshot: unusable keys (%s)", record.id, exc.message)
            continue
        entries[record.id] = MemberEntry(record=record, keys=keys, declared=holdings.get(record.id, ()))
    return RegistrySnapshot(revision=revision, members=MappingProxyType(entries), datasets=policy)


class Registry:
    """The registry: durable changes through :meth:`change`, reads from :attr:`snapshot`."""

    def __init__(self, store: RegistryStore, holder: SnapshotHolder, clock: Clock) -> None:
        self.store = store
        self.holder = holder
        self.clock = clock

    @property
    def snapshot(self) -> RegistrySnapshot:
        return self.holder.current

    async def refresh(self) -> RegistrySnapshot:
        """Reload every member if the database is at a newer revision than the snapshot."""
        revision, records, rules = await self.store.snapshot_rows()
        # Two refreshes can finish out of order; never install an older one over a newer.
        if revision > self.holder.current.revision:
            self.holder.replace(build_snapshot(revision, records, rules))
        return self.holder.current

    @asynccontextmanager
    async def change(self) -> AsyncIterator[Tx]:
        """A write transaction; once committed, this process's snapshot is refreshed at once."""
        async with self.store.write() as tx:
            yield tx
        try:
            await self.refresh()
        except Exception as exc:  # committed already: answer success; the watch loop catches up
            log.warning("snapshot refresh after a change failed: %s", type(exc).__name__)

    async def watch(self, interval: float) -> None:
        """Poll the revision forever; reload when another process changed the registry."""
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.store.revision() != self.holder.current.revision:
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database blip must not end the loop; the snapshot stays
                log.warning("registry refresh failed, keeping revision %d: %s",
                            self.holder.current.revision, type(exc).__name__)
