"""Replicas that start together on an empty PostgreSQL database migrate it exactly once.

Migrations run inside one transaction holding a PostgreSQL advisory lock; without it,
concurrent ``CREATE TABLE``\\ s and version inserts race (duplicate-table or unique-key
errors, and a replica that fails to start). These tests start them truly at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fedbroker.registry import migrations
from fedbroker.demo.childproc import ChildProcess, free_port, python_module_command
from fedbroker.registry.db import create_engine
from fedbroker.demo.run import LISTENING
from fedbroker.registry.migrations import MIGRATIONS, migrate
from fedproto.keys import KeyRing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
CONCURRENT = 6


async def schema_rows(postgres: Any, db_url: str) -> tuple[int, int]:
    conn = await postgres.connect(db_url)
    try:
        return (await conn.fetchval("SELECT count(*) FROM schema_version"),
                await conn.fetchval("SELECT count(*) FROM registry_state"))
    finally:
        await conn.close()


async def migrate_concurrently(db_url: str) -> list[Any]:
    engines = [create_engine(db_url) for _ in range(CONCURRENT)]
    try:
        return await asyncio.gather(*(migrate(e, 1.0) for e in engines), return_exceptions=True)
    finally:
        await asyncio.gather(*(e.dispose() for e in engines))


async def test_concurrent_migrations_apply_each_version_once(postgres: Any) -> None:
    db_url = await postgres.new_database()
    results = await migrate_concurrently(db_url)
    assert results == [MIGRATIONS[-1].version] * CONCURRENT
    assert await schema_rows(postgres, db_url) == (len(MIGRATIONS), 1)


async def test_without_the_lock_concurrent_migrations_race(postgres: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: shows the test above would catch a lost lock."""
    monkeypatch.setattr(migrations, "_lock", _no_lock)
    db_url = await postgres.new_database()
    results = await migrate_concurrently(db_url)
    assert any(isinstance(r, Exception) for r in results), results


async def _no_lock(conn: Any) -> None:
    return None


def test_two_replicas_starting_at_once_on_an_empty_database(postgres: Any, tmp_path: Path) -> None:
    db_url = asyncio.run(postgres.new_database())
    KeyRing.load_or_create(tmp_path / "keys")
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        config = tmp_path / name / "broker.toml"
        config.write_text(f'broker_id = "replicated"\ndb_url = "{db_url}"\nkeys_dir = "{tmp_path / "keys"}"\n')
        argv = [*python_module_command("fedbroker"), "serve", "--config", str(config), "--port", str(free_port())]
        replicas.append(ChildProcess(f"replica {name}", argv, tmp_path / f"{name}.log"))
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_for_line(LISTENING)
    finally:
        codes = [replica.stop() for replica in replicas]
    assert codes == [0, 0], [r.output()[-2000:] for r in replicas]
    assert asyncio.run(schema_rows(postgres, db_url)) == (len(MIGRATIONS), 1)
