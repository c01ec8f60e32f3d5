"""The fedmember command: init, enroll and serve, run as a user runs them."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_member_enroll import broker_stub

from fedmember.cli import main
from fedmember.config import load_config
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import KeyRing, PrivateKey

FEDMEMBER = [sys.executable, "-m", "fedmember.cli"]


def test_init_writes_config_and_private_keys(tmp_path: Path, capsys: Any) -> None:
    assert main(["init", str(tmp_path / "m"), "--backend", "local", "--id", "uni-x"]) == 0
    config = load_config(tmp_path / "m")
    assert config.member.id == "uni-x" and config.backend.kind == "local"
    keys = list((tmp_path / "m" / "keys").glob("*.pem"))
    assert len(keys) == 1 and stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    assert main(["init", str(tmp_path / "m"), "--backend", "local"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_init_refuses_a_bad_id(tmp_path: Path, capsys: Any) -> None:
    assert main(["init", str(tmp_path / "m"), "--backend", "local", "--id", "Bad_ID"]) == 2
    assert "DNS label" in capsys.readouterr().err


def test_serve_refuses_plain_http_without_dev(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("FEDERATION_DEV", raising=False)
    main(["init", str(tmp_path / "m"), "--backend", "local", "--id", "uni-x"])
    assert main(["serve", "--config", str(tmp_path / "m" / "member.toml")]) == 2
    assert "not https" in capsys.readouterr().err


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *FEDMEMBER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_enroll_command(aiohttp_server: Any, tmp_path: Path) -> None:
    main(["init", str(tmp_path / "m"), "--backend", "local", "--id", "uni-x"])
    ring = KeyRing([PrivateKey.generate()])
    token = EnrollmentToken.new(ring.signing_key.kid)
    server = await aiohttp_server(broker_stub(ring, token))
    config = str(tmp_path / "m" / "member.toml")
    code, out = await _run("enroll", str(server.make_url("/")), "--token", str(token), "--config", config)
    assert code == 2 and "not https" in out  # plain http needs --dev
    code, out = await _run("enroll", str(server.make_url("/")), "--token", str(token), "--config", config, "--dev")
    assert code == 0, out
    assert "enrolled uni-x with broker stub-broker: state pending" in out
    assert load_config(config).broker.id == "stub-broker"


@pytest.mark.slow
async def test_serve_prints_its_url_and_answers_health(tmp_path: Path) -> None:
    main(["init", str(tmp_path / "m"), "--backend", "local", "--id", "uni-x"])
    proc = await asyncio.create_subprocess_exec(
        *FEDMEMBER, "serve", "--config", str(tmp_path / "m" / "member.toml"), "--dev", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line.startswith("fedmember listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/health") as resp:
                assert resp.status == 200 and (await resp.json())["ok"] is True
            async with session.get(url + "/api/v1/status") as resp:
                assert resp.status == 401 and (await resp.json())["error"] == "not_enrolled"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
