"""Shared health polling in the registry database: replica leases and each member's latest poll result.

Several broker replicas on one PostgreSQL split the members between them (``launch/pollshare.py``
decides who polls what); this module is the SQL: renew a lease and list the live replicas,
publish poll results, and read the results other replicas published since a sequence number.
Works on SQLite too (one replica: nothing to share, but the same code runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import tables


@dataclass(frozen=True)
class PollRow:
    """One member's poll result as stored: the verified ad as JSON, or the error."""

    member_id: str
    polled_at: float
    ad_json: str | None
    error: str | None
    replica_id: str = ""
    seq: int = 0


def _upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT`` in the connection's dialect."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


class PollStore:
    """Leases and shared poll results, on the registry's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def heartbeat(self, replica_id: str, now: float, lease: float) -> list[str]:
        """Renew this replica's lease; return the live replicas' ids (sorted). Rows of replicas dead
        for ten leases are removed."""
        t = tables.broker_replicas
        async with self._engine.begin() as conn:
            stmt = _upsert(conn, t).values(replica_id=replica_id, heartbeat_at=now)
            await conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.replica_id],
                                                          set_={"heartbeat_at": now}))
            await conn.execute(sa.delete(t).where(t.c.heartbeat_at < now - 10 * lease))
            rows = await conn.execute(sa.select(t.c.replica_id).where(t.c.heartbeat_at > now - lease))
            return sorted(r[0] for r in rows)

    async def leave(self, replica_id: str) -> None:
        """Give up the lease at once (a clean shutdown): the others take over without waiting."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(tables.broker_replicas).where(tables.broker_replicas.c.replica_id == replica_id))

    async def publish(self, replica_id: str, rows: list[PollRow]) -> None:
        """Store the latest result of each member in ``rows``, numbered after every earlier one."""
        if not rows:
            return
        state, polls = tables.poll_state, tables.member_polls
        async with self._engine.begin() as conn:
            # The row lock on poll_state is held to commit: sequence order is commit order.
            last = (await conn.execute(sa.update(state).where(state.c.id == 1)
                                       .values(seq=state.c.seq + len(rows)).returning(state.c.seq))).scalar_one()
            values = [{"member_id": r.member_id, "seq": last - len(rows) + 1 + i, "replica_id": replica_id,
                       "polled_at": r.polled_at, "ad": r.ad_json, "error": r.error[:500] if r.error else None}
                      for i, r in enumerate(rows)]
            stmt = _upsert(conn, polls)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[polls.c.member_id],
                set_={c: getattr(stmt.excluded, c) for c in ("seq", "replica_id", "polled_at", "ad", "error")}),
                values)

    async def since(self, seq: int, limit: int = 5000) -> list[PollRow]:
        """Results published after ``seq``, oldest first (at most ``limit``)."""
        p = tables.member_polls
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(p).where(p.c.seq > seq).order_by(p.c.seq).limit(limit))
            return [PollRow(member_id=r.member_id, polled_at=r.polled_at, ad_json=r.ad, error=r.error,
                            replica_id=r.replica_id, seq=r.seq) for r in rows]
