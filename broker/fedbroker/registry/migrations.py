"""Registry schema migrations: an ordered list of versions applied at startup in one transaction.

Why not Alembic: the registry has six small tables and must migrate itself when
``fedbroker serve`` starts, on SQLite and PostgreSQL alike, with no extra
config files (``alembic.ini``, ``env.py``) for operators to ship. A versioned
list of async functions in one module does that in ~100 lines: each broker runs
the missing steps inside one transaction, holding a PostgreSQL advisory lock
(SQLite's ``BEGIN IMMEDIATE`` plays that role there), so replicas that start
together do not race, and a failed step leaves the schema as it was.

To change the schema: append a :class:`Migration` with the next version whose
function issues the DDL for the change, and update ``tables.py`` to the result.
Never edit a released migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import tables

# Any constant unique to this application; two brokers on one PostgreSQL take turns on it.
_ADVISORY_LOCK_ID = 0x66656462  # "fedb"


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` is applied once, in order, by ``apply``."""

    version: int
    description: str
    apply: Callable[[AsyncConnection], Awaitable[None]]


async def _v1_initial(conn: AsyncConnection) -> None:
    # Version 1 is the tables as first released; later versions must use explicit DDL.
    initial = [
        tables.registry_state,
        tables.members,
        tables.enroll_tokens,
        tables.admin_tokens,
        tables.audit_log,
    ]
    await conn.run_sync(lambda sync: tables.metadata.create_all(sync, tables=initial))
    await conn.execute(sa.insert(tables.registry_state).values(id=1, revision=1))


async def _v2_member_canary(conn: AsyncConnection) -> None:
    # _v1_initial creates tables.members as it is now, so a database made fresh already has it.
    columns = await conn.run_sync(lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("members")})
    if "canary" in columns:
        return
    await conn.execute(sa.text("ALTER TABLE members ADD COLUMN canary BOOLEAN NOT NULL DEFAULT TRUE"))


async def _add_column(conn: AsyncConnection, table: str, column: str, ddl_type: str) -> None:
    """``ALTER TABLE table ADD COLUMN``, unless the table has it already.

    Step 1 creates its tables from ``tables.py`` as it is now, so a fresh database already
    has columns that later steps add to databases created by an older broker.
    """
    columns = await conn.run_sync(lambda sync: {c["name"] for c in sa.inspect(sync).get_columns(table)})
    if column not in columns:
        await conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}"))


async def _v3_token_revocation(conn: AsyncConnection) -> None:
    # A revoked token keeps its row (the audit log names it); revoked_at makes it unusable at once.
    await _add_column(conn, "admin_tokens", "revoked_at", "FLOAT")
    await _add_column(conn, "admin_tokens", "created_by", "VARCHAR(200)")
    await _add_column(conn, "enroll_tokens", "revoked_at", "FLOAT")


async def _v4_dataset_policy(conn: AsyncConnection) -> None:
    # Which members hold and may serve a dataset is the registry's word, not the members' ads;
    # and an admin caps what a member may advertise as its capacity.
    await conn.run_sync(lambda sync: tables.metadata.create_all(
        sync, tables=[tables.dataset_owners, tables.dataset_declarations]))
    await _add_column(conn, "members", "max_capacity", "INTEGER")


async def _v5_shared_polls(conn: AsyncConnection) -> None:
    # Replicas on one database poll each member once between them and share the results.
    await conn.run_sync(lambda sync: tables.metadata.create_all(
        sync, tables=[tables.broker_replicas, tables.member_polls, tables.poll_state]))
    if await conn.scalar(sa.select(sa.func.count()).select_from(tables.poll_state)) == 0:
        await conn.execute(sa.insert(tables.poll_state).values(id=1, seq=0))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "members, tokens, audit log, registry revision", _v1_initial),
    Migration(2, "members.canary: whether canary launches run on the member", _v2_member_canary),
    Migration(3, "revocable admin and enrollment tokens; who created an admin token", _v3_token_revocation),
    Migration(4, "dataset owners and declarations; members' admin-set capacity cap", _v4_dataset_policy),
    Migration(5, "replicas sharing health polls: leases and the latest poll result per member", _v5_shared_polls),
)


async def current_version(conn: AsyncConnection) -> int:
    """The schema version of the database, 0 when it is empty."""
    has_table = await conn.run_sync(lambda sync: sa.inspect(sync).has_table("schema_version"))
    if not has_table:
        return 0
    value = await conn.scalar(sa.select(sa.func.max(tables.schema_version.c.version)))
    return int(value or 0)


async def _lock(conn: AsyncConnection) -> None:
    """Hold the migration lock until the transaction ends (SQLite's BEGIN IMMEDIATE does this there).

    Without it, replicas starting together on an empty database race: both see no
    ``schema_version`` table and both create the tables, and one fails to start.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})


class SchemaBehind(RuntimeError):
    """The database has an older schema and this broker was told not to migrate it at start."""


async def migrate(engine: AsyncEngine, now: float, migrations: tuple[Migration, ...] = MIGRATIONS, *,
                  upgrade: bool = True) -> int:
    """Bring the schema up to the newest version; return that version.

    Refuses a database migrated by a newer broker rather than guess at its schema. With
    ``upgrade=False`` (``fedbroker serve`` unless ``migrate_on_start``) an empty database still
    gets the newest schema (a first install), but an older one raises :class:`SchemaBehind`:
    upgrading a shared registry is the operator's step (``fedbroker migrate``, after a backup),
    never a side effect of a pod starting, since a rollback would then meet a schema it cannot read.
    """
    newest = migrations[-1].version if migrations else 0
    async with engine.begin() as conn:
        await _lock(conn)
        await conn.run_sync(lambda sync: tables.schema_version.create(sync, checkfirst=True))
        version = await current_version(conn)
        if version > newest:
            raise RuntimeError(
                f"the registry database has schema version {version}, newer than this broker's "
                f"{newest}; upgrade the broker"
            )
        if 0 < version < newest and not upgrade:
            raise SchemaBehind(
                f"the registry database has schema version {version}, this broker needs {newest}: back it up, then "
                "run `fedbroker migrate` (the chart's migrations.job does it before an upgrade), or set migrate_on_start = true"
            )
        for step in migrations:
            if step.version <= version:
                continue
            await step.apply(conn)
            await conn.execute(
                sa.insert(tables.schema_version).values(
                    version=step.version, description=step.description, applied_at=now
                )
            )
        return newest
