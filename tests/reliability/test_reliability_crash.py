"""Crash safety: SIGKILL the broker in the middle of a burst of enrollments and admin changes.

Each member goes through enroll -> approve -> drain -> weight 2.5, step by step, many members
at once. The broker is killed without warning while requests are in flight. Afterwards the
SQLite file passes ``PRAGMA integrity_check``, and every member's registry row shows at least
its last acknowledged step (a step that was committed but whose answer was lost may show too,
never less); after a restart the admin API shows the same.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fedbroker.initdir import init_broker
from fedproto.clock import SystemClock
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import PrivateKey, PublicKeySet
from fedproto.tokens import sign_request

pytestmark = pytest.mark.slow

MEMBERS = 40
KILL_AFTER_ACKS = 70  # acknowledged steps before the kill: mid-burst, with more in flight
STEPS = ("enroll", "approve", "drain", "weight")
# What each step leaves in the row: (state, weight).
AFTER = {"enroll": ("pending", 1.0), "approve": ("active", 1.0), "drain": ("draining", 1.0),
         "weight": ("draining", 2.5)}


async def start_broker(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    # subprocess, not asyncio's: the exit status must be the broker's own (-9), and asyncio's
    # child watcher reports 255 when another test's process handling reaped the child first.
    script = Path(sys.executable).parent / "fedbroker"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(script), "serve", "--config", str(config), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=fh)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)).decode().strip()
    assert line.startswith("fedbroker listening on "), (line, log.read_text()[-2000:])
    return proc, line.rsplit(" ", 1)[1]


def _enrollment(member_id: str, token: str) -> tuple[bytes, dict[str, str]]:
    import json

    key = PrivateKey.generate()
    body = json.dumps({
        "token": token, "member_id": member_id, "display_name": member_id,
        "agent_url": f"https://{member_id}.example.org/agent", "public_url": f"https://{member_id}.example.org/",
        "jwks": PublicKeySet([key.public]).to_jwks(),
    }).encode()
    signed = sign_request(key, issuer=member_id, audience=EnrollmentToken.parse(token).broker_kid, method="POST",
                          path_qs="/api/v1/enroll", body=body, clock=SystemClock())
    return body, {"Authorization": f"Bearer {signed}", "Content-Type": "application/json"}


class Burst:
    """Drives every member through its steps; remembers the last acknowledged one."""

    def __init__(self, url: str, admin: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
        self.url, self.admin, self.proc = url, admin, proc
        self.acked: dict[str, str] = {}
        self.count = 0

    def ack(self, member_id: str, step: str) -> None:
        self.acked[member_id] = step
        self.count += 1
        if self.count == KILL_AFTER_ACKS:
            self.proc.send_signal(signal.SIGKILL)  # the instant this answer is in: others are mid-flight

    async def step(self, http: aiohttp.ClientSession, member_id: str, step: str) -> bool:
        if step == "enroll":
            async with http.post(f"{self.url}/api/v1/enroll-tokens", json={"name": member_id},
                                 headers=self.admin) as r:
                if r.status != 201:
                    return False
                body, headers = _enrollment(member_id, (await r.json())["token"])
            request = http.post(f"{self.url}/api/v1/enroll", data=body, headers=headers)
        elif step == "weight":
            request = http.patch(f"{self.url}/api/v1/members/{member_id}", json={"weight": 2.5}, headers=self.admin)
        else:
            request = http.post(f"{self.url}/api/v1/members/{member_id}/{step}", headers=self.admin)
        async with request as r:
            return r.status in (200, 201)

    async def member(self, http: aiohttp.ClientSession, member_id: str) -> None:
        for step in STEPS:
            try:
                if not await self.step(http, member_id, step):
                    return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # the broker died under this request: unacknowledged
            self.ack(member_id, step)


def _allowed(acked: str | None) -> set[tuple[str, float] | None]:
    """Rows a member may show: its last acknowledged step's, or the next step's (committed, answer lost)."""
    if acked is None:
        return {None, AFTER["enroll"]}
    i = STEPS.index(acked)
    return {AFTER[s] for s in STEPS[i:i + 2]}


def _rows(db_path: Path) -> dict[str, tuple[str, float]]:
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {m: (s, float(w)) for m, s, w in db.execute("SELECT id, state, weight FROM members")}
    finally:
        db.close()


async def test_acknowledged_changes_survive_sigkill(tmp_path: Path) -> None:
    config, admin_token = await init_broker(tmp_path / "broker", {"broker_id": "crashme"})
    proc, url = await start_broker(config, tmp_path / "broker.log")
    burst = Burst(url, {"Authorization": f"Bearer {admin_token}"}, proc)
    ids = [f"m{i:03d}" for i in range(MEMBERS)]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await asyncio.wait_for(asyncio.gather(*(burst.member(http, m) for m in ids)), 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        code = await asyncio.to_thread(proc.wait, 30)
        proc.stdout.close()  # type: ignore[union-attr]
    assert code == -9, "the broker was not killed mid-burst (too few acknowledged steps?)"
    assert KILL_AFTER_ACKS <= burst.count < MEMBERS * len(STEPS)

    rows = _rows(tmp_path / "broker" / "registry.sqlite")
    wrong = {m: (burst.acked.get(m), rows.get(m)) for m in ids if rows.get(m) not in _allowed(burst.acked.get(m))}
    assert wrong == {}

    restarted, url = await start_broker(config, tmp_path / "broker-restarted.log")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/v1/members", headers=burst.admin) as r:
                listed: list[dict[str, Any]] = (await r.json())["members"]
        assert {m["id"]: (m["state"], float(m["weight"])) for m in listed} == rows
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(restarted.wait, 15) == 0
        restarted.stdout.close()  # type: ignore[union-attr]
    assert "Traceback" not in (tmp_path / "broker-restarted.log").read_text()
    assert os.path.getsize(tmp_path / "broker" / "registry.sqlite") > 0
