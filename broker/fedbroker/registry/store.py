"""The registry store: members, enrollment and admin tokens, the audit log and the revision, in SQL.

Every change happens inside :meth:`RegistryStore.write`, one transaction that also
bumps the registry revision; the transaction is committed before ``write`` returns,
so a caller that answers HTTP afterwards only ever acknowledges durable changes.

Token secrets are stored as SHA-256 digests only. They are 256-bit random values,
so a fast hash is enough: a slow password hash protects low-entropy secrets from
guessing, and there is nothing here to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fedproto.clock import Clock
from fedproto.errors import Conflict, NotFound
from fedproto.member import MemberRecord

from . import tables
from .db import create_engine
from .datasetpolicy import DatasetRule
from .migrations import migrate

ADMIN_SCOPES = ("members:read", "members:write", "tokens:write")


def secret_hash(secret: str) -> str:
    """The stored form of a token secret (hex SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id(prefix: str) -> str:
    """A short random public id for a token row (never derived from its secret)."""
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True)
class EnrollTokenRow:
    """An enrollment token as stored (no secret)."""

    id: str
    name: str
    broker_kid: str
    auto_approve: bool
    created_at: float
    expires_at: float
    used_at: float | None
    used_by: str | None
    revoked_at: float | None = None


@dataclass(frozen=True)
class AdminTokenRow:
    """An admin token as stored (no secret)."""

    id: str
    name: str
    scopes: frozenset[str]
    expires_at: float
    created_at: float = 0.0
    revoked_at: float | None = None
    created_by: str | None = None

    def public(self) -> dict[str, Any]:
        """What the admin API shows of it (never the secret, which is not stored)."""
        return {"id": self.id, "name": self.name, "scopes": sorted(self.scopes), "created_at": self.created_at,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at, "created_by": self.created_by}


def _enroll_row(row: Any) -> EnrollTokenRow:
    return EnrollTokenRow(
        id=row.id, name=row.name, broker_kid=row.broker_kid, auto_approve=row.auto_approve,
        created_at=row.created_at, expires_at=row.expires_at, used_at=row.used_at, used_by=row.used_by,
        revoked_at=row.revoked_at,
    )


def _admin_row(row: Any) -> AdminTokenRow:
    return AdminTokenRow(id=row.id, name=row.name, scopes=frozenset(row.scopes), expires_at=row.expires_at,
                         created_at=row.created_at, revoked_at=row.revoked_at, created_by=row.created_by)


@dataclass(frozen=True)
class DatasetOwnerRow:
    """A data provider whose signed requests may declare datasets under ``prefixes``."""

    id: str
    display_name: str
    jwks: dict[str, Any]
    prefixes: tuple[str, ...]  # normalised dataset id prefixes

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "display_name": self.display_name, "jwks": self.jwks, "prefixes": list(self.prefixes)}


def _owner_from_row(row: Any) -> DatasetOwnerRow:
    return DatasetOwnerRow(id=row.id, display_name=row.display_name, jwks=row.jwks, prefixes=tuple(row.prefixes))


def _rule_from_row(row: Any) -> DatasetRule:
    return DatasetRule(id=row.id, prefix=row.prefix, holders=frozenset(row.holders),
                       servers=None if row.servers is None else frozenset(row.servers),
                       size_bytes=row.size_bytes, declared_by=row.declared_by)


def _record_from_row(row: Any) -> MemberRecord:
    return MemberRecord.model_validate(
        {
            "id": row.id, "display_name": row.display_name, "agent_url": row.agent_url,
            "public_url": row.public_url, "state": row.state, "weight": row.weight,
            "location": row.location, "datasets": row.datasets, "labels": row.labels, "canary": row.canary,
            "jwks": row.jwks, "created_at": row.created_at, "updated_at": row.updated_at,
            "max_capacity": row.max_capacity,
        }
    )


def _row_from_record(record: MemberRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")


class Tx:
    """One open registry transaction; its methods read and write through it."""

    def __init__(self, conn: AsyncConnection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.changed = False

    # -- members -----------------------------------------------------------
    async def member(self, member_id: str, *, for_update: bool = False) -> MemberRecord | None:
        query = sa.select(tables.members).where(tables.members.c.id == member_id)
        if for_update:  # a row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return _record_from_row(row) if row else None

    async def require_member(self, member_id: str, *, for_update: bool = True) -> MemberRecord:
        record = await self.member(member_id, for_update=for_update)
        if record is None:
            raise NotFound(f"no member with id {member_id!r}", reason="unknown_member")
        return record

    async def members(self) -> list[MemberRecord]:
        rows = await self.conn.execute(sa.select(tables.members).order_by(tables.members.c.id))
        return [_record_from_row(r) for r in rows]

    async def insert_member(self, record: MemberRecord) -> None:
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(sa.insert(tables.members).values(**_row_from_record(record)))
        except IntegrityError:
            raise Conflict(f"a member with id {record.id!r} already exists", reason="member_exists") from None
        self.changed = True

    async def update_member(self, record: MemberRecord) -> None:
        values = _row_from_record(record)
        del values["id"], values["created_at"]
        await self.conn.execute(
            sa.update(tables.members).where(tables.members.c.id == record.id).values(**values)
        )
        self.changed = True

    async def delete_member(self, member_id: str) -> None:
        await self.conn.execute(sa.delete(tables.members).where(tables.members.c.id == member_id))
        self.changed = True

    # -- enrollment tokens ---------------------------------------------------
    async def add_enroll_token(
        self, *, secret: str, name: str, broker_kid: str, auto_approve: bool, ttl: float, created_by: str
    ) -> EnrollTokenRow:
        row = EnrollTokenRow(
            id=new_id("enr"), name=name, broker_kid=broker_kid, auto_approve=auto_approve,
            created_at=self.now, expires_at=self.now + ttl, used_at=None, used_by=None,
        )
        await self.conn.execute(
            sa.insert(tables.enroll_tokens).values(
                secret_hash=secret_hash(secret), created_by=created_by, **row.__dict__
            )
        )
        self.changed = True
        return row

    async def enroll_token(self, secret: str) -> EnrollTokenRow | None:
        t = tables.enroll_tokens
        row = (await self.conn.execute(
            sa.select(t).where(t.c.secret_hash == secret_hash(secret))
        )).first()
        return _enroll_row(row) if row is not None else None

    async def enroll_token_by_id(self, token_id: str) -> EnrollTokenRow | None:
        t = tables.enroll_tokens
        row = (await self.conn.execute(sa.select(t).where(t.c.id == token_id))).first()
        return _enroll_row(row) if row is not None else None

    async def enroll_tokens(self) -> list[EnrollTokenRow]:
        t = tables.enroll_tokens
        return [_enroll_row(r) for r in await self.conn.execute(sa.select(t).order_by(t.c.created_at, t.c.id))]

    async def revoke_enroll_token(self, token_id: str) -> EnrollTokenRow | None:
        """Revoke an unused token (a used one has done its work); None when there is no such token."""
        t = tables.enroll_tokens
        row = (await self.conn.execute(sa.select(t).where(t.c.id == token_id))).first()
        if row is None:
            return None
        if row.revoked_at is None and row.used_at is None:
            await self.conn.execute(sa.update(t).where(t.c.id == token_id).values(revoked_at=self.now))
            self.changed = True
        return _enroll_row((await self.conn.execute(sa.select(t).where(t.c.id == token_id))).one())

    async def consume_enroll_token(self, token_id: str, member_id: str) -> bool:
        """Mark the token used; False if another transaction used it first.

        The ``used_at IS NULL`` condition makes this atomic: of two concurrent
        uses, the second UPDATE matches no row (PostgreSQL re-checks the condition
        after the first commits; SQLite runs the two transactions one after the other).
        """
        t = tables.enroll_tokens
        result = await self.conn.execute(
            sa.update(t)
            .where(t.c.id == token_id, t.c.used_at.is_(None), t.c.revoked_at.is_(None), t.c.expires_at > self.now)
            .values(used_at=self.now, used_by=member_id)
        )
        self.changed = True
        return result.rowcount == 1

    # -- admin tokens ----------------------------------------------------------
    async def add_admin_token(self, *, secret: str, name: str, scopes: list[str], ttl: float,
                              created_by: str | None = None, expires_at: float | None = None) -> AdminTokenRow:
        """A new token expiring after ``ttl`` seconds, or at ``expires_at`` when that is sooner."""
        expires = self.now + ttl if expires_at is None else min(self.now + ttl, expires_at)
        row = AdminTokenRow(id=new_id("adm"), name=name, scopes=frozenset(scopes), expires_at=expires,
                            created_at=self.now, created_by=created_by)
        await self.conn.execute(
            sa.insert(tables.admin_tokens).values(
                id=row.id, token_hash=secret_hash(secret), name=name, scopes=sorted(scopes),
                created_at=self.now, expires_at=row.expires_at, created_by=created_by,
            )
        )
        self.changed = True
        return row

    async def admin_token(self, secret: str) -> AdminTokenRow | None:
        t = tables.admin_tokens
        row = (await self.conn.execute(sa.select(t).where(t.c.token_hash == secret_hash(secret)))).first()
        return _admin_row(row) if row is not None else None

    async def admin_token_by_id(self, token_id: str) -> AdminTokenRow | None:
        t = tables.admin_tokens
        row = (await self.conn.execute(sa.select(t).where(t.c.id == token_id))).first()
        return _admin_row(row) if row is not None else None

    async def admin_tokens(self) -> list[AdminTokenRow]:
        t = tables.admin_tokens
        return [_admin_row(r) for r in await self.conn.execute(sa.select(t).order_by(t.c.created_at, t.c.id))]

    async def revoke_admin_token(self, token_id: str) -> None:
        t = tables.admin_tokens
        await self.conn.execute(
            sa.update(t).where(t.c.id == token_id, t.c.revoked_at.is_(None)).values(revoked_at=self.now))
        self.changed = True

    # -- dataset declarations and owners ---------------------------------------
    async def dataset_rules(self) -> list[DatasetRule]:
        t = tables.dataset_declarations
        return [_rule_from_row(r) for r in await self.conn.execute(sa.select(t).order_by(t.c.id))]

    async def dataset_rule(self, dataset_id: str) -> DatasetRule | None:
        t = tables.dataset_declarations
        row = (await self.conn.execute(sa.select(t).where(t.c.id == dataset_id))).first()
        return _rule_from_row(row) if row is not None else None

    async def put_dataset_rule(self, rule: DatasetRule) -> bool:
        """Insert or replace the declaration for ``rule.id``; True when it was new."""
        t = tables.dataset_declarations
        values = {"prefix": rule.prefix, "holders": sorted(rule.holders),
                  "servers": None if rule.servers is None else sorted(rule.servers),
                  "size_bytes": rule.size_bytes, "declared_by": rule.declared_by, "updated_at": self.now}
        result = await self.conn.execute(sa.update(t).where(t.c.id == rule.id).values(**values))
        created = result.rowcount == 0
        if created:
            await self.conn.execute(sa.insert(t).values(id=rule.id, created_at=self.now, **values))
        self.changed = True
        return created

    async def delete_dataset_rule(self, dataset_id: str) -> bool:
        t = tables.dataset_declarations
        result = await self.conn.execute(sa.delete(t).where(t.c.id == dataset_id))
        self.changed = True
        return result.rowcount == 1

    async def dataset_owners(self) -> list[DatasetOwnerRow]:
        t = tables.dataset_owners
        return [_owner_from_row(r) for r in await self.conn.execute(sa.select(t).order_by(t.c.id))]

    async def dataset_owner(self, owner_id: str) -> DatasetOwnerRow | None:
        t = tables.dataset_owners
        row = (await self.conn.execute(sa.select(t).where(t.c.id == owner_id))).first()
        return _owner_from_row(row) if row is not None else None

    async def add_dataset_owner(self, owner: DatasetOwnerRow) -> None:
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(sa.insert(tables.dataset_owners).values(
                    id=owner.id, display_name=owner.display_name, jwks=owner.jwks, prefixes=list(owner.prefixes),
                    created_at=self.now, updated_at=self.now))
        except IntegrityError:
            raise Conflict(f"a dataset owner with id {owner.id!r} already exists", reason="owner_exists") from None
        self.changed = True

    async def delete_dataset_owner(self, owner_id: str) -> bool:
        t = tables.dataset_owners
        result = await self.conn.execute(sa.delete(t).where(t.c.id == owner_id))
        self.changed = True
        return result.rowcount == 1

    # -- audit and revision ----------------------------------------------------
    async def audit(self, actor: str, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        """Append one audit entry. Callers pass ids and names only, never a secret."""
        await self.conn.execute(
            sa.insert(tables.audit_log).values(
                at=self.now, actor=actor, action=action, target=target, details=details or {}
            )
        )
        self.changed = True

    async def audit_entries(self, target: str | None = None) -> list[dict[str, Any]]:
        t = tables.audit_log
        query = sa.select(t).order_by(t.c.id)
        if target is not None:
            query = query.where(t.c.target == target)
        return [dict(r._mapping) for r in await self.conn.execute(query)]

    async def revision(self) -> int:
        return int(await self.conn.scalar(sa.select(tables.registry_state.c.revision)) or 0)

    async def bump_revision(self) -> None:
        await self.conn.execute(
            sa.update(tables.registry_state).values(revision=tables.registry_state.c.revision + 1)
        )


class RegistryStore:
    """The registry database: open it, then read or write in transactions."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    async def open(cls, url: str, clock: Clock, *, upgrade: bool = True) -> RegistryStore:
        """Connect and migrate the schema to the newest version (an older one only with ``upgrade``)."""
        engine = create_engine(url)
        try:
            await migrate(engine, clock.now(), upgrade=upgrade)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, clock)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self.engine.begin() as conn:
            yield Tx(conn, self.clock.now())

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """A transaction that bumps the revision if it changed anything; committed on exit."""
        async with self.engine.begin() as conn:
            tx = Tx(conn, self.clock.now())
            yield tx
            if tx.changed:
                await tx.bump_revision()

    async def revision(self) -> int:
        async with self.read() as tx:
            return await tx.revision()

    async def snapshot_rows(self) -> tuple[int, list[MemberRecord], list[DatasetRule]]:
        """The revision, every member and every dataset declaration, read in one transaction so they agree."""
        async with self.read() as tx:
            return await tx.revision(), await tx.members(), await tx.dataset_rules()
