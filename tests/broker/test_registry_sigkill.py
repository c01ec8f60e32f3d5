"""An acknowledged enrollment and admin change survive SIGKILL right after the answer."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from fedbroker.initdir import init_broker
from fedproto.clock import SystemClock
from fedproto.enrollment import EnrollmentToken

pytestmark = pytest.mark.slow


async def test_changes_survive_sigkill(tmp_path: Path, serve_broker, member_kit):
    config, admin = await init_broker(tmp_path / "broker", {"broker_id": "killme"})
    headers = {"Authorization": f"Bearer {admin}"}
    broker = await serve_broker(config)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{broker.url}/api/v1/enroll-tokens", json={"name": "k"}, headers=headers) as r:
            assert r.status == 201
            token = (await r.json())["token"]
        kit = member_kit("survivor")
        raw, sig = kit.signed("/api/v1/enroll", kit.enrollment_body(token), clock=SystemClock(),
                              audience=EnrollmentToken.parse(token).broker_kid)
        async with http.post(f"{broker.url}/api/v1/enroll", data=raw, headers=sig) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"{broker.url}/api/v1/members/survivor/approve", headers=headers) as r:
            assert r.status == 200
            broker.kill()  # the instant the answer is in: no graceful shutdown, no checkpoint
    assert await broker.proc.wait() == -9

    db = sqlite3.connect(tmp_path / "broker" / "registry.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT state FROM members WHERE id = 'survivor'").fetchone() == ("active",)
        actions = [a for (a,) in db.execute("SELECT action FROM audit_log ORDER BY id")]
        assert actions[-2:] == ["member.enroll", "member.approve"]
    finally:
        db.close()

    restarted = await serve_broker(config)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{restarted.url}/api/v1/members", headers=headers) as r:
            members = (await r.json())["members"]
    assert [(m["id"], m["state"]) for m in members] == [("survivor", "active")]
    assert await restarted.stop() == 0
    assert "Traceback" not in restarted.log_path.read_text()
    assert admin not in restarted.log_path.read_text() + json.dumps(members)
