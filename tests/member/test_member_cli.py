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
from slowloris import dribble
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


@pytest.mark.slow
async def test_serve_closes_slow_and_idle_clients(tmp_path: Path) -> None:
    """Browsers reach the agent (ticketed /build, fronted servers), so a slowloris must not hold it."""
    import time

    import tomli_w
    import tomllib

    main(["init", str(tmp_path / "m"), "--backend", "local", "--id", "uni-x"])
    path = tmp_path / "m" / "member.toml"
    doc = tomllib.loads(path.read_text())
    doc["member"].update({"header_timeout": 1.0, "keepalive_timeout": 1.5})
    path.write_text(tomli_w.dumps(doc))
    proc = await asyncio.create_subprocess_exec(
        *FEDMEMBER, "serve", "--config", str(path), "--dev", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip().rsplit(" ", 1)[1]
        port = int(url.rsplit(":", 1)[1])

        head = b"GET /build/gh/o/r/HEAD HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200  # 40 s at 5 bytes a second
        slow = [asyncio.create_task(dribble("127.0.0.1", port, head, step=0.2)) for _ in range(20)]
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/health") as resp:  # others are served meanwhile
                assert resp.status == 200
        lifetimes = await asyncio.wait_for(asyncio.gather(*slow), 30)
        assert max(lifetimes) < 1.0 + 2.0, sorted(lifetimes)[-3:]

        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # idle keep-alive: closed too
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        idle_from = time.monotonic()
        while await asyncio.wait_for(reader.read(65536), 10):
            pass
        assert time.monotonic() - idle_from < 1.5 + 2.0
        writer.close()
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
