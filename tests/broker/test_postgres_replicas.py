"""Two `fedbroker serve` processes on one PostgreSQL: a change through one is seen by the other within 5 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from fedbroker.initdir import init_broker
from fedproto.keys import PrivateKey, PublicKeySet

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


async def _states(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> dict[str, str]:
    async with http.get(f"{url}/api/v1/members", headers=headers) as r:
        assert r.status == 200
        return {m["id"]: m["state"] for m in (await r.json())["members"]}


async def _until_seen(http, url, headers, want: dict[str, str], limit: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await _states(http, url, headers) == want:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not show {want} within {limit} s: {await _states(http, url, headers)}")


async def test_change_through_one_replica_is_visible_in_the_other(postgres, tmp_path: Path, serve_broker):
    db_url = await postgres.new_database()
    config_a, admin = await init_broker(tmp_path / "a", {"broker_id": "replicated", "db_url": db_url})
    # Replica B: same id, database and keys; its own config directory.
    (tmp_path / "b").mkdir()
    config_b = tmp_path / "b" / "broker.toml"
    config_b.write_text(
        f'broker_id = "replicated"\ndb_url = "{db_url}"\nkeys_dir = "{tmp_path / "a" / "keys"}"\n'
    )
    a, b = await asyncio.gather(serve_broker(config_a), serve_broker(config_b))
    headers = {"Authorization": f"Bearer {admin}"}
    body = {"id": "shared", "display_name": "Shared", "agent_url": "https://s.example.org",
            "public_url": "https://s.example.org", "jwks": PublicKeySet([PrivateKey.generate().public]).to_jwks()}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{a.url}/api/v1/members", json=body, headers=headers) as r:
            assert r.status == 201
        await _until_seen(http, b.url, headers, {"shared": "pending"})
        async with http.post(f"{a.url}/api/v1/members/shared/approve", headers=headers) as r:
            assert r.status == 200
        assert await _states(http, a.url, headers) == {"shared": "active"}  # at once where it was made
        seconds = await _until_seen(http, b.url, headers, {"shared": "active"})
        # And back the other way: drain through B, seen in A.
        async with http.post(f"{b.url}/api/v1/members/shared/drain", headers=headers) as r:
            assert r.status == 200
        await _until_seen(http, a.url, headers, {"shared": "draining"})
    assert seconds < 5.0
    assert await a.stop() == 0 and await b.stop() == 0
