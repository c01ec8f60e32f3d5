"""Regression: many long launch streams do not starve further launches or status polls.

Found by benchmarks/bench_streams.py: with aiohttp's default pool of 100 connections, only
100 of 1,000 relayed launches ever reached a member, and status polls queued behind them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.launch import LaunchEvent, LaunchRequest

from fedbroker.config import BrokerConfig
from fedbroker.launch.memberclient import MemberClient, new_session

from member_double import MemberDouble

STREAMS = 130  # more than aiohttp's default pool of 100


async def _endless(request: web.Request) -> web.StreamResponse:
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(LaunchEvent(phase="building", message="step\n").sse())
    while True:
        await asyncio.sleep(0.5)
        await resp.write(b":keepalive\n\n")


@pytest.fixture
async def member_server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/api/v1/launches", _endless)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_launches_beyond_a_hundred_all_reach_the_member(tmp_path: Path, member_server: TestServer) -> None:
    config = BrokerConfig(base_dir=tmp_path, dev=True)
    keyring = KeyRing([PrivateKey.generate()])
    session = new_session(config)
    client = MemberClient(config, keyring, SystemClock(), session)
    double = MemberDouble("m1", broker_keys=keyring.public_set(), clock=SystemClock())
    entry = double.entry(url=str(member_server.make_url("")).rstrip("/"))
    streams = [client.launch(entry, LaunchRequest(provider="gh", spec="o/r/HEAD", launch_id=f"launch{i:04d}"))
               for i in range(STREAMS)]
    try:
        firsts = await asyncio.wait_for(asyncio.gather(*(anext(s) for s in streams)), timeout=20)
        assert [e.phase for e in firsts] == ["building"] * STREAMS
    finally:
        await asyncio.gather(*(s.aclose() for s in streams), return_exceptions=True)
        await session.close()
