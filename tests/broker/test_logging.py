"""Logging settings of a real ``fedbroker serve``: level, access log and decision lines, from the config
and from ``--log-level``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fedbroker.demo.run import set_section

pytestmark = pytest.mark.slow


async def _init(run_cli: Any, path: Path, logging: dict[str, Any] | None = None) -> Path:
    code, _out, err = await run_cli("init", str(path), "--broker-id", "logs")
    assert code == 0, err
    config = path / "broker.toml"
    if logging is not None:
        config.write_text(set_section(config.read_text(), "logging", logging))
    return config


async def _launch_and_stop(broker: Any) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{broker.url}/build/gh/org/repo/HEAD", headers={"Accept": "text/event-stream"}) as resp:
            await resp.read()
    await asyncio.sleep(0.2)
    assert await broker.stop() == 0
    return broker.log_path.read_text()


async def test_defaults_log_access_and_decisions(tmp_path: Path, run_cli: Any, serve_broker: Any) -> None:
    broker = await serve_broker(await _init(run_cli, tmp_path / "b"))
    log = await _launch_and_stop(broker)
    assert '"GET /build/gh/org/repo/HEAD HTTP/1.1" 200' in log  # the access line
    assert "fedbroker.decisions: decision id=" in log and "repo=gh:org/repo chosen=-" in log


async def test_config_turns_access_and_decision_lines_off(tmp_path: Path, run_cli: Any, serve_broker: Any) -> None:
    config = await _init(run_cli, tmp_path / "b", {"access_log": False, "decisions": False})
    log = await _launch_and_stop(await serve_broker(config))
    assert "GET /build" not in log and "decision id=" not in log
    assert "stopping: finishing open requests" in log  # other INFO lines stay


async def test_log_level_flag_overrides_the_config(tmp_path: Path, run_cli: Any, serve_broker: Any) -> None:
    config = await _init(run_cli, tmp_path / "b", {"level": "DEBUG"})
    log = await _launch_and_stop(await serve_broker(config, "--log-level", "WARNING"))
    assert " INFO " not in log and " DEBUG " not in log
    code, _out, err = await run_cli("serve", "--config", str(config), "--log-level", "LOUD")
    assert code == 2 and "invalid choice: 'LOUD'" in err
