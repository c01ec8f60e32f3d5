"""The fedbroker command line: init, enroll-token create, members ..., against a real `fedbroker serve`."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import aiohttp
import pytest

from fedbroker.cli.main import parse_duration
from fedbroker.config import BrokerConfig
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import PrivateKey, PublicKeySet


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400),
                                               ("7d", 604800), ("1.5h", 5400)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1w", "1 h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


async def _quiet_on_closed_pipe(*args: str, env: dict[str, str]) -> bool:
    """`fedbroker ... | head` where the reader is already gone: no traceback, a plain exit."""
    import asyncio
    import os

    from brokerkit import fedbroker_command

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await asyncio.create_subprocess_exec(*fedbroker_command(), *args, stdout=write_end,
                                                    stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode(), err.decode()
    return proc.returncode in (0, 1)


@pytest.fixture
async def initialised(tmp_path: Path, run_cli) -> tuple[Path, str]:
    code, out, err = await run_cli("init", str(tmp_path / "b"), "--broker-id", "cli-broker")
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("admin token: fedadmin_")
    return tmp_path / "b" / "broker.toml", last.removeprefix("admin token: ")


async def test_init_writes_a_loadable_commented_config_and_refuses_to_overwrite(initialised, run_cli):
    config_path, token = initialised
    text = config_path.read_text()
    assert "# Seconds between registry change checks" in text and "[health]" in text
    assert tomllib.loads(text)["broker_id"] == "cli-broker"
    config = BrokerConfig.load(config_path)
    assert any(config.resolve("keys").glob("ed25519-*.pem"))
    assert token not in text
    code, out, err = await run_cli("init", str(config_path.parent))
    assert code == 1 and "refusing to overwrite" in err and "admin token" not in out


@pytest.mark.slow
async def test_admin_commands_against_a_running_broker(initialised, serve_broker, run_cli):
    config_path, admin = initialised
    broker = await serve_broker(config_path)
    env = {"FEDBROKER_URL": broker.url, "FEDBROKER_TOKEN": admin}

    code, out, err = await run_cli("enroll-token", "create", "--name", "site A", "--ttl", "2h", "--auto-approve",
                                   env=env)
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert EnrollmentToken.parse(token).broker_kid and token.startswith("fedenroll_")

    code, out, err = await run_cli("admin-token", "create", "--name", "reader", "--scope", "members:read", env=env)
    assert code == 0, err
    reader = out.strip().splitlines()[-1]
    assert reader.startswith("fedadmin_") and "members:read" in out
    code, out, err = await run_cli("members", "list", "--json", env={**env, "FEDBROKER_TOKEN": reader})
    assert code == 0 and json.loads(out)["members"] == [], err

    # Pre-register a member through the API the CLI wraps, then drive it with the CLI.
    body = {"id": "site-a", "display_name": "Site A", "agent_url": "https://a.example.org",
            "public_url": "https://a.example.org", "jwks": PublicKeySet([PrivateKey.generate().public]).to_jwks()}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{broker.url}/api/v1/members", json=body,
                             headers={"Authorization": f"Bearer {admin}"}) as r:
            assert r.status == 201

    code, out, _ = await run_cli("members", "list", "--json", env=env)
    listing = json.loads(out)
    assert code == 0 and [(m["id"], m["state"]) for m in listing["members"]] == [("site-a", "pending")]
    assert isinstance(listing["revision"], int)
    code, out, _ = await run_cli("members", "approve", "site-a", "--url", broker.url, "--token", admin)
    assert code == 0 and out.strip() == "member site-a is now active"
    code, out, _ = await run_cli("members", "list", env=env)
    assert out.splitlines()[0].split()[:2] == ["ID", "STATE"] and "site-a" in out and "active" in out
    assert out.splitlines()[0].split()[:5] == ["ID", "STATE", "HEALTH", "LOAD", "LAST"]
    code, out, _ = await run_cli("members", "show", "site-a", "--json", env=env)
    assert json.loads(out)["state"] == "active" and "last_error" in json.loads(out)["health"]
    code, out, _ = await run_cli("members", "show", "site-a", env=env)
    assert code == 0 and "health:" in out and "last poll:" in out and "last failure:" in out
    code, out, _ = await run_cli("members", "list", "--json", env=env)
    assert set(json.loads(out)["health"]["site-a"]) >= {"state", "routable", "reason", "last_poll_at", "last_error"}
    code, out, err = await run_cli("members", "approve", "site-a", env=env)
    assert code == 1 and "409 illegal_transition" in err
    code, out, err = await run_cli("members", "remove", "site-a", env=env)
    assert code == 1 and "cannot remove a member that is active" in err and "retire" not in err.split(";")[0]
    assert await _quiet_on_closed_pipe("members", "list", env=env)
    assert (await run_cli("members", "drain", "site-a", env=env))[0] == 0
    code, out, _ = await run_cli("members", "remove", "site-a", "--json", env=env)
    assert json.loads(out) == {"id": "site-a", "removed": True, "state": "retired"}

    code, _, err = await run_cli("members", "list", env={**env, "FEDBROKER_TOKEN": "fedadmin_wrong"})
    assert code == 1 and "401" in err
    code, _, err = await run_cli("members", "list", env={"FEDBROKER_URL": "", "FEDBROKER_TOKEN": ""})
    assert code == 1 and "--url" in err
    assert await broker.stop() == 0
    assert admin not in broker.log_path.read_text() and token not in broker.log_path.read_text()
