"""Schema upgrades are the operator's step: `fedbroker serve` refuses an older registry schema (an empty one
still gets the schema), and `fedbroker migrate` (what the chart's pre-upgrade Job runs) brings it up to date."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from fedbroker.cli.main import main
from fedbroker.config import BrokerConfig
from fedbroker.registry.db import create_engine
from fedbroker.registry.migrations import MIGRATIONS, SchemaBehind, migrate
from fedbroker.registry.store import RegistryStore
from fedproto.clock import FakeClock


async def _version_1_registry(config: BrokerConfig) -> None:
    """The registry as a broker of schema version 1 left it."""
    path = Path(config.resolved_db_url.split(":///", 1)[1])
    path.unlink()
    engine = create_engine(config.resolved_db_url)
    await migrate(engine, 0.0, MIGRATIONS[:1])
    await engine.dispose()


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(tmp_path / "site")]) == 0
    capsys.readouterr()
    return tmp_path / "site" / "broker.toml"


def test_serve_refuses_an_older_schema_and_migrate_upgrades_it(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = BrokerConfig.load(site)
    asyncio.run(_version_1_registry(config))
    newest = MIGRATIONS[-1].version

    served = subprocess.run([sys.executable, "-m", "fedbroker", "serve", "--config", str(site), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 1, served.stderr[-2000:]
    assert f"schema version 1, this broker needs {newest}" in served.stderr and "fedbroker migrate" in served.stderr
    assert "Traceback" not in served.stderr

    assert main(["migrate", "--check", "--config", str(site)]) == 1
    assert f"version 1 is behind this broker's {newest}" in capsys.readouterr().err
    assert main(["migrate", "--config", str(site)]) == 0
    assert capsys.readouterr().out.strip() == f"registry schema version 1 -> {newest}"
    assert main(["migrate", "--config", str(site)]) == 0
    assert capsys.readouterr().out.strip() == f"registry schema already at version {newest}"
    assert main(["migrate", "--check", "--config", str(site)]) == 0
    asyncio.run(_open(config.resolved_db_url))


async def _open(url: str) -> None:
    store = await RegistryStore.open(url, FakeClock(), upgrade=False)
    await store.close()


async def test_an_empty_registry_gets_the_schema_without_migrate(tmp_path: Path) -> None:
    """A first install needs no migrate step: only an *older* schema is refused."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite'}"
    store = await RegistryStore.open(url, FakeClock(), upgrade=False)
    await store.close()


async def test_migrate_on_start_keeps_the_old_behaviour(site: Path) -> None:
    config = BrokerConfig.load(site)
    await _version_1_registry(config)
    with pytest.raises(SchemaBehind):
        await RegistryStore.open(config.resolved_db_url, FakeClock(), upgrade=False)
    assert BrokerConfig.model_fields["migrate_on_start"].default is False
    store = await RegistryStore.open(config.resolved_db_url, FakeClock(), upgrade=True)
    await store.close()
