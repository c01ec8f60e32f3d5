"""Two ``fedbroker serve`` replicas on one PostgreSQL split the health polling and share the results.

A small member farm in the test process answers each member's signed status ad and counts who
is polled when. Between them the replicas poll each member once per interval (not once each);
a member seen unhealthy by one replica is unroutable on the other within 2 s of that poll; and
when one replica is killed, the other polls every member within about one interval.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from fedbroker.demo.childproc import ChildProcess, free_port, python_module_command
from fedbroker.demo.run import LISTENING, set_section
from fedbroker.initdir import init_broker
from fedproto.clock import SystemClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.status import Capacity, StatusAd

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MEMBERS = [f"poll-{i}" for i in range(8)]
INTERVAL = 2.0
HEALTH = {"interval": INTERVAL, "jitter": 0.0, "unhealthy_after": 1, "healthy_after": 1, "poll_lease": 1.5,
          "poll_sync": 0.25, "unhealthy_interval": INTERVAL}


class Farm:
    """The members' agents, as far as polling goes: a signed ad per member, and when each was polled."""

    def __init__(self) -> None:
        self.keyring = KeyRing([PrivateKey.generate()])
        self.clock = SystemClock()
        self.polls: dict[str, list[float]] = {m: [] for m in MEMBERS}
        self.healthy = {m: True for m in MEMBERS}

    async def status(self, request: web.Request) -> web.Response:
        member = request.match_info["member"]
        now = self.clock.now()
        self.polls[member].append(now)
        ad = StatusAd(member_id=member, instance_id="farm", generation=len(self.polls[member]), issued_at=now,
                      expires_at=now + 60, healthy=self.healthy[member], capacity=Capacity(total=10, used=0),
                      backend="farm")
        return web.json_response({"signed": ad.sign(self.keyring.signing_key, self.clock)})

    def polled_between(self, start: float, end: float) -> dict[str, int]:
        return {m: sum(1 for t in times if start <= t < end) for m, times in self.polls.items()}


@pytest.fixture
async def farm() -> AsyncIterator[tuple[Farm, str]]:
    f = Farm()
    app = web.Application()
    app.router.add_get("/{member}/api/v1/status", f.status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _configs(tmp_path: Path, db_url: str) -> tuple[Path, Path, str]:
    config_a, admin = await init_broker(tmp_path / "a", {"broker_id": "shared", "db_url": db_url, "dev": True,
                                                         "snapshot_refresh": 0.5})
    text = set_section(config_a.read_text(), "health", HEALTH)
    config_a.write_text(text)
    (tmp_path / "b").mkdir()
    config_b = tmp_path / "b" / "broker.toml"
    config_b.write_text(f'keys_dir = "{tmp_path / "a" / "keys"}"\n' + text)
    return config_a, config_b, admin


async def _routable(http: aiohttp.ClientSession, url: str) -> set[str]:
    async with http.get(f"{url}/health") as resp:
        return set((await resp.json())["checks"][0].get("members", []))


async def _wait(predicate: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return time.time()
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


async def test_replicas_poll_each_member_once_and_share_health(postgres: Any, tmp_path: Path,
                                                               farm: tuple[Farm, str]) -> None:
    members, farm_url = farm
    config_a, config_b, admin = await _configs(tmp_path, await postgres.new_database())
    ports = free_port(), free_port()
    replicas = [ChildProcess(f"replica {n}", [*python_module_command("fedbroker"), "serve", "--config", str(c),
                                              "--port", str(p)], tmp_path / f"{n}.log")
                for n, c, p in (("a", config_a, ports[0]), ("b", config_b, ports[1]))]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession() as http:
        try:
            for r in replicas:
                r.start()
                r.wait_for_line(LISTENING)
            for m in MEMBERS:
                body = {"id": m, "display_name": m, "agent_url": f"{farm_url}/{m}", "public_url": f"https://{m}.example",
                        "jwks": members.keyring.public_set().to_jwks()}
                async with http.post(f"{urls[0]}/api/v1/members", json=body, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                async with http.post(f"{urls[0]}/api/v1/members/{m}/approve", headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
            for url in urls:
                await _wait(lambda url=url: _all_routable(http, url), 20, f"{url} routes to every member")

            # Once per interval between the two of them (each alone would double it).
            await asyncio.sleep(INTERVAL)
            start = time.time()
            await asyncio.sleep(3 * INTERVAL)
            counts = members.polled_between(start, time.time())
            assert all(1 <= c <= 4 for c in counts.values()), counts
            assert sum(counts.values()) <= len(MEMBERS) * 3.5, counts

            # One replica sees a member fail; the other stops routing to it within 2 s of that poll.
            members.healthy["poll-3"] = False
            gone = [await _wait(lambda url=url: _lacks(http, url, "poll-3"), 3 * INTERVAL, f"{url} drops poll-3")
                    for url in urls]
            failing_poll = min(t for t in members.polls["poll-3"] if t >= start + 3 * INTERVAL)
            assert max(gone) - failing_poll < 2.0, (gone, failing_poll)
            members.healthy["poll-3"] = True

            # A replica killed: the other polls all members within about one interval, alone.
            replicas[0].kill()
            await asyncio.sleep(HEALTH["poll_lease"] + INTERVAL)  # its lease runs out; its members come due
            await asyncio.sleep(3 * INTERVAL)
            counts = members.polled_between(time.time() - 3 * INTERVAL, time.time())
            assert all(c >= 2 for c in counts.values()), counts
            assert await _all_routable(http, urls[1])
        finally:
            for r in replicas:
                r.stop()


async def _all_routable(http: aiohttp.ClientSession, url: str) -> bool:
    return set(MEMBERS) <= await _routable(http, url)


async def _lacks(http: aiohttp.ClientSession, url: str, member: str) -> bool:
    return member not in await _routable(http, url)
