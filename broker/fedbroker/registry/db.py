"""The registry database engine: SQLite (WAL, synchronous=FULL, foreign keys) or PostgreSQL via asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseURLError(ValueError):
    """A ``db_url`` this broker cannot use."""


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take over transaction control from the driver (see _sqlite_on_begin), then set
    # durability: WAL plus synchronous=FULL fsyncs the log on every commit, so an
    # answered write survives a SIGKILL or a power cut.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(pragma)
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN: two writers queue on busy_timeout instead
    # of both reading and then failing to upgrade their locks (SQLITE_BUSY mid-transaction).
    # It also makes DDL in migrations transactional, which pysqlite's default would not.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise DatabaseURLError("db_url is not a valid SQLAlchemy URL") from exc
    if parsed.drivername == "sqlite+aiosqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.drivername == "postgresql+asyncpg":
        return create_async_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise DatabaseURLError(
        f"unsupported database driver {parsed.drivername!r}: use sqlite+aiosqlite:///PATH "
        "or postgresql+asyncpg://USER@HOST/DB"
    )
