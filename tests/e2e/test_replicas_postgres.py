"""Two broker replicas on one PostgreSQL behind a round-robin proxy, with a real member agent.

Enrollment goes through one replica, a launch through the other; then one replica is
killed and the other keeps serving through the proxy. The registry rows are counted in
PostgreSQL afterwards: nothing duplicated, nothing lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from e2ekit import E2E_BROKER_SETTINGS, check_ready, launch
from fedbroker.adminclient import AdminClient
from fedbroker.demo.childproc import ChildProcess, free_port, python_module_command
from fedbroker.demo.run import LISTENING, set_section
from fedbroker.demo.agent import MemberAgent
from fedbroker.demo.repos import create_repos
from fedbroker.demo.sites import DemoSite
from fedbroker.initdir import init_broker
from fedbroker.registry.migrations import MIGRATIONS
from fedproto.keys import PrivateKey, PublicKeySet
from rrproxy import RoundRobinProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SITE = DemoSite("site-a", "Site A", 48.85, 2.35, "eu-west", "FR", capacity=3)
EXTRA_MEMBERS = 10


async def replica_configs(tmp_path: Path, db_url: str, public_url: str) -> tuple[Path, Path, str]:
    """Replica A's directory from ``fedbroker init``; replica B shares its id, database and keys."""
    values = {"broker_id": "replicated", "db_url": db_url, "public_url": public_url, "dev": True,
              "snapshot_refresh": 0.5}
    config_a, admin = await init_broker(tmp_path / "a", values)
    text = config_a.read_text()
    for section, settings in E2E_BROKER_SETTINGS.items():
        text = set_section(text, section, settings)
    config_a.write_text(text)
    (tmp_path / "b").mkdir()
    config_b = tmp_path / "b" / "broker.toml"
    config_b.write_text(f'keys_dir = "{tmp_path / "a" / "keys"}"\n' + text)
    return config_a, config_b, admin


def serve(config: Path, port: int, log: Path) -> ChildProcess:
    child = ChildProcess(f"replica {config.parent.name}", [*python_module_command("fedbroker"), "serve", "--config",
                                                         str(config), "--dev", "--port", str(port)], log)
    child.start()
    return child


async def wait_routable(http: aiohttp.ClientSession, url: str, member_id: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        async with http.get(f"{url}/health") as resp:
            if member_id in (await resp.json())["checks"][0]["members"]:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never routed to {member_id}")


async def wait_member_count(http: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int,
                            timeout: float = 5.0) -> None:
    seen = 0
    for _ in range(int(timeout / 0.1)):
        async with http.get(f"{url}/api/v1/members", headers=headers) as resp:
            seen = len((await resp.json())["members"])
        if seen == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} shows {seen} members, not {count}, after {timeout:g} s")


async def add_members_through_both(http: aiohttp.ClientSession, urls: list[str], token: str) -> None:
    """Admin writes spread over both replicas at once: each must land exactly once."""
    headers = {"Authorization": f"Bearer {token}"}

    async def add(i: int) -> None:
        body = {"id": f"extra-{i}", "display_name": f"Extra {i}", "agent_url": f"https://extra-{i}.example.org",
                "public_url": f"https://extra-{i}.example.org", "jwks": PublicKeySet([PrivateKey.generate().public]).to_jwks()}
        async with http.post(f"{urls[i % 2]}/api/v1/members", json=body, headers=headers) as resp:
            assert resp.status == 201, await resp.text()

    await asyncio.gather(*(add(i) for i in range(EXTRA_MEMBERS)))


async def count_rows(postgres: Any, db_url: str) -> dict[str, Any]:
    conn = await postgres.connect(db_url)
    try:
        return {
            "members": await conn.fetchval("SELECT count(*) FROM members"),
            "distinct members": await conn.fetchval("SELECT count(DISTINCT id) FROM members"),
            "enroll tokens": await conn.fetchval("SELECT count(*) FROM enroll_tokens"),
            "used by": await conn.fetchval("SELECT used_by FROM enroll_tokens"),
            "admin tokens": await conn.fetchval("SELECT count(*) FROM admin_tokens"),
            "enrolments": await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'member.enroll'"),
            "creations": await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'member.create'"),
            "approvals": await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'member.approve'"),
            "active": await conn.fetchval("SELECT count(*) FROM members WHERE state = 'active'"),
            "schema versions": await conn.fetchval("SELECT count(*) FROM schema_version"),
            "registry state rows": await conn.fetchval("SELECT count(*) FROM registry_state"),
        }
    finally:
        await conn.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A new connection per request, so the proxy's round robin sees every request.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


async def test_two_replicas_enroll_launch_and_survive_one_killed(postgres: Any, tmp_path: Path,
                                                                  http: aiohttp.ClientSession) -> None:
    db_url = await postgres.new_database()
    port_a, port_b, port_proxy = free_port(), free_port(), free_port()
    proxy = RoundRobinProxy(port_proxy, [port_a, port_b]).start()
    config_a, config_b, admin = await replica_configs(tmp_path, db_url, proxy.url)
    replica_a = serve(config_a, port_a, tmp_path / "a.log")
    replica_b = serve(config_b, port_b, tmp_path / "b.log")
    member = MemberAgent(SITE, tmp_path / "member")
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    try:
        replica_a.wait_for_line(LISTENING)
        replica_b.wait_for_line(LISTENING)
        repo = create_repos(tmp_path / "repos")[0]

        # Enrollment through replica A: token, then `fedmember enroll` against A.
        token = AdminClient(url_a, admin).create_enroll_token("site-a", 600.0, True)["token"]
        member.init(None)
        member.enroll(url_a, token)
        member.start()
        member.wait_started()

        # The launch through replica B, which only learnt of the member from the database.
        await wait_routable(http, url_b, SITE.member_id)
        ready = await check_ready(await launch(url_b, repo.spec()))
        assert ready["member"] == SITE.member_id

        await add_members_through_both(http, [url_a, url_b], admin)
        headers = {"Authorization": f"Bearer {admin}"}
        for url in (url_a, url_b):  # each replica sees the other's writes within snapshot_refresh
            await wait_member_count(http, url, headers, 1 + EXTRA_MEMBERS)
        await wait_routable(http, url_a, SITE.member_id)
        for _ in range(4):
            async with http.get(f"{proxy.url}/health") as resp:
                assert resp.status == 200
        assert proxy.served[port_a] >= 2 and proxy.served[port_b] >= 2, proxy.served

        replica_a.kill()
        for _ in range(6):  # every request still answered, by B alone
            async with http.get(f"{proxy.url}/api/v1/members", headers=headers) as resp:
                assert resp.status == 200
                assert len((await resp.json())["members"]) == 1 + EXTRA_MEMBERS
        async with http.post(f"{proxy.url}/api/v1/members/extra-0/approve", headers=headers) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "active"  # writes too
        ready = await check_ready(await launch(proxy.url, repo.spec("v1")))
        assert ready["member"] == SITE.member_id
    finally:
        member.stop()
        replica_b.stop()
        replica_a.stop()
        proxy.stop()

    assert await count_rows(postgres, db_url) == {
        "members": 1 + EXTRA_MEMBERS, "distinct members": 1 + EXTRA_MEMBERS, "enroll tokens": 1,
        "used by": SITE.member_id, "admin tokens": 1, "enrolments": 1, "creations": EXTRA_MEMBERS,
        "approvals": 1, "active": 2,
        "schema versions": len(MIGRATIONS), "registry state rows": 1,
    }
