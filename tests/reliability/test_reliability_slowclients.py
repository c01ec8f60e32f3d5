"""Slow and oversized clients do not starve anyone else.

While hundreds of connections dribble their request headers a byte at a time (slowloris),
and others push bodies far over the size limit, a normal request to the same server still
answers quickly, and the oversize bodies are refused (413, or 401 before reading an
unsigned one), not buffered.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from fedbroker.demo.run import DemoFederation

pytestmark = pytest.mark.slow

SLOW_CONNECTIONS = 300
OVERSIZE_CLIENTS = 20
HOLD_SECONDS = 6.0
NORMAL_LIMIT = 1.0  # seconds a normal request may take while the attack runs


async def _slowloris(host: str, port: int, stop: asyncio.Event) -> None:
    """One connection that never finishes its headers."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    try:
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        for byte in request:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)
    except (ConnectionError, OSError):
        pass  # the server may close slow connections: that is a fine defence
    finally:
        writer.close()


async def _oversize(url: str, path: str, stop: asyncio.Event) -> list[int]:
    """Bodies of 64 MiB, sent as fast as the server reads them, again and again."""
    statuses = []
    chunk = b"x" * 65536

    async def body():  # type: ignore[no-untyped-def]
        for _ in range(1024):
            if stop.is_set():
                return
            yield chunk

    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.post(url + path, data=body(), headers={"Content-Type": "application/json"}) as r:
                    statuses.append(r.status)
            except aiohttp.ClientError:
                statuses.append(413)  # closed on us mid-upload after the refusal
    return statuses


async def _normal(url: str, stop: asyncio.Event) -> list[float]:
    times = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while not stop.is_set():
            started = time.monotonic()
            async with http.get(url + "/health") as r:
                await r.read()
                assert r.status in (200, 503)
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    return times


async def _attack(url: str, oversize_path: str) -> tuple[list[float], list[int]]:
    parts = urlsplit(url)
    stop = asyncio.Event()
    slow = [asyncio.create_task(_slowloris(parts.hostname or "", parts.port or 80, stop))
            for _ in range(SLOW_CONNECTIONS)]
    big = [asyncio.create_task(_oversize(url, oversize_path, stop)) for _ in range(OVERSIZE_CLIENTS)]
    await asyncio.sleep(1.0)  # let the slow connections open
    normal = asyncio.create_task(_normal(url, stop))
    await asyncio.sleep(HOLD_SECONDS)
    stop.set()
    times = await asyncio.wait_for(normal, 15)
    statuses = [s for result in await asyncio.wait_for(asyncio.gather(*big), 30) for s in result]
    await asyncio.wait_for(asyncio.gather(*slow), 30)
    return times, statuses


@pytest.mark.parametrize("target", ["broker", "member"])
async def test_slow_and_oversize_clients_do_not_starve_others(small_federation: DemoFederation, target: str) -> None:
    fed = small_federation
    url = fed.broker_url if target == "broker" else next(iter(fed.members.values())).agent_url
    path = "/api/v1/enroll" if target == "broker" else "/api/v1/launches"
    times, statuses = await _attack(url, path)
    assert len(times) >= HOLD_SECONDS / 0.5, times
    assert max(times) < NORMAL_LIMIT, sorted(times)[-5:]
    # 413, or 401 where authentication comes first (an unsigned upload is refused unread), or 429
    # once the enrollment rate limit has counted this client's attempts (refused unread too).
    assert statuses and set(statuses) <= {401, 413, 429}, sorted(set(statuses))
