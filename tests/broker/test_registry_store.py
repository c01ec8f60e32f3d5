"""The registry store on SQLite and PostgreSQL: migrations, revisions, atomic token use, snapshot refresh."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import pytest
import sqlalchemy as sa

from fedbroker.registry import tables
from fedbroker.errors import Conflict
from fedbroker.registry.migrations import MIGRATIONS, Migration, migrate
from fedbroker.registry.service import Registry
from fedbroker.registry.snapshot import SnapshotHolder
from fedbroker.registry.store import RegistryStore
from fedproto.keys import PrivateKey, PublicKeySet
from fedproto.member import MemberRecord, MemberState


def record(member_id: str, state: MemberState = MemberState.pending) -> MemberRecord:
    return MemberRecord(
        id=member_id, display_name=member_id, agent_url="https://a.example.org", public_url="https://p.example.org",
        state=state, jwks=PublicKeySet([PrivateKey.generate().public]).to_jwks(), created_at=1.0, updated_at=1.0,
        location={"region": "eu"}, datasets=[{"id": "10.1/x"}], labels={"a": "b"},
    )


@pytest.fixture
async def store(db_url, clock):
    opened = await RegistryStore.open(db_url, clock)
    yield opened
    await opened.close()


async def test_migrations_are_idempotent_and_versioned(store, db_url, clock):
    again = await RegistryStore.open(db_url, clock)  # a second broker starting on the same database
    await again.close()
    async with store.read() as tx:
        versions = (await tx.conn.execute(sa.select(tables.schema_version.c.version))).scalars().all()
    assert versions == [m.version for m in MIGRATIONS]
    assert await store.revision() == 1


async def test_database_from_a_newer_broker_is_refused(store):
    async def noop(conn):
        return None

    await migrate(store.engine, 0.0, MIGRATIONS + (Migration(99, "future", noop),))
    with pytest.raises(RuntimeError, match="newer"):
        await migrate(store.engine, 0.0)


async def test_every_write_bumps_the_revision_and_a_failed_one_does_not(store):
    start = await store.revision()
    async with store.write() as tx:
        await tx.insert_member(record("a"))
        await tx.audit("admin:t", "member.create", "a")
    assert await store.revision() == start + 1
    async with store.read() as tx:
        assert [m.id for m in await tx.members()] == ["a"]
    with pytest.raises(Conflict):
        async with store.write() as tx:
            await tx.audit("admin:t", "member.create", "a")
            await tx.insert_member(record("a"))
    assert await store.revision() == start + 1
    async with store.read() as tx:
        assert len(await tx.audit_entries()) == 1
        loaded = await tx.member("a")
    assert loaded == record("a").model_copy(update={"jwks": loaded.jwks})


async def test_concurrent_token_use_from_two_processes_exactly_one_wins(store, db_url, clock):
    async with store.write() as tx:
        row = await tx.add_enroll_token(secret="s" * 43, name="n", broker_kid="k", auto_approve=False,
                                        ttl=60, created_by="t")
    other = await RegistryStore.open(db_url, clock)  # a second engine: another broker process

    async def use(s: RegistryStore, member: str) -> bool:
        async with s.write() as tx:
            return await tx.consume_enroll_token(row.id, member)

    try:
        results = await asyncio.gather(use(store, "x"), use(other, "y"), use(store, "z"))
    finally:
        await other.close()
    assert sorted(results) == [False, False, True]


async def test_expired_token_cannot_be_consumed(store, clock):
    async with store.write() as tx:
        row = await tx.add_enroll_token(secret="e" * 43, name="n", broker_kid="k", auto_approve=False,
                                        ttl=10, created_by="t")
    clock.advance(10)
    async with store.write() as tx:
        assert await tx.consume_enroll_token(row.id, "x") is False


async def test_another_process_sees_a_change_through_the_revision_poll(store, db_url, clock):
    mine = Registry(store, SnapshotHolder(), clock)
    other_store = await RegistryStore.open(db_url, clock)
    theirs = Registry(other_store, SnapshotHolder(), clock)
    await theirs.refresh()
    watcher = asyncio.create_task(theirs.watch(0.05))
    try:
        async with mine.change() as tx:
            await tx.insert_member(record("b", MemberState.active))
        assert mine.snapshot.members["b"].record.state is MemberState.active  # at once, here
        for _ in range(100):
            if "b" in theirs.snapshot.members:
                break
            await asyncio.sleep(0.05)
        assert theirs.snapshot.members["b"].keys.kids
        assert theirs.snapshot.revision == mine.snapshot.revision
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
        await other_store.close()


async def test_a_version_1_registry_gains_the_canary_switch_on(db_url, clock):
    """A registry made before canaries (members without the column) keeps its members, canaries on."""
    engine = (await RegistryStore.open(db_url, clock)).engine
    async with engine.begin() as conn:  # back to the version-1 shape, with a member in it
        await conn.execute(sa.text("ALTER TABLE members DROP COLUMN canary"))
        await conn.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version > 1))
        row = record("old").model_dump(mode="json", exclude={"canary"})
        await conn.execute(sa.insert(sa.table("members", *(sa.column(k, sa.JSON if isinstance(v, (dict, list)) else None)
                                                           for k, v in row.items()))).values(**row))
    await engine.dispose()
    store = await RegistryStore.open(db_url, clock)
    try:
        async with store.read() as tx:
            assert (await tx.member("old")).canary is True  # type: ignore[union-attr]
            versions = (await tx.conn.execute(sa.select(tables.schema_version.c.version))).scalars().all()
        assert versions == [m.version for m in MIGRATIONS]
    finally:
        await store.close()
