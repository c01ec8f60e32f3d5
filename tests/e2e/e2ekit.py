"""Helpers for the end-to-end tests: a federation fixture factory, launches through /build, dry runs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp

from fedbroker.demo.childproc import sweep_processes_under
from fedbroker.demo.run import DemoFederation
from fedbroker.demo.repos import ExampleRepo

# Fast health so a killed member is noticed within about a second; default hysteresis.
E2E_BROKER_SETTINGS: dict[str, dict[str, Any]] = {
    "health": {"interval": 0.5, "timeout": 1.0, "unhealthy_interval": 0.5, "jitter": 0.1},
    "routing": {"event_timeout": 30.0, "keepalive": 5.0},
}
LAUNCH_TIMEOUT = 90.0
READY_FIELDS = ("url", "token", "member", "decision")

Event = dict[str, Any]


def start_federation(directory: Path) -> DemoFederation:
    """The demo federation with test health settings, on free ports, every member routable."""
    fed = DemoFederation(directory, port=0, broker_settings=E2E_BROKER_SETTINGS)
    try:
        fed.start(timeout=90)
    except BaseException:
        fed.stop()
        raise
    return fed


def stop_federation(fed: DemoFederation) -> None:
    """Stop everything and check that no process is left running under the federation's directory."""
    fed.stop()
    leftovers = sweep_processes_under(fed.directory)
    assert leftovers == [], f"processes left running after stop: {leftovers}"


def repo_named(fed: DemoFederation, name: str) -> ExampleRepo:
    return next(r for r in fed.repos if r.name == name)


async def launch(
    base_url: str, spec: str, data: tuple[str, ...] = (), on_event: Callable[[Event], None] | None = None,
    provider: str = "git",
) -> list[Event]:
    """Every event of one ``/build`` stream, until ``ready`` or ``failed``."""
    query = f"?{urlencode([('data', d) for d in data])}" if data else ""
    events: list[Event] = []
    timeout = aiohttp.ClientTimeout(total=LAUNCH_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        url = f"{base_url}/build/{provider}/{spec}{query}"
        async with http.get(url, headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 200, await resp.text()
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                events.append(event)
                if on_event is not None:
                    on_event(event)
                if event["phase"] in ("ready", "failed"):
                    break
            if events and events[-1]["phase"] == "ready":
                # The decision id reaches the client twice: the header and the ready event.
                assert events[-1].get("decision") == resp.headers["X-Federation-Decision"], events[-1]
    assert events and events[-1]["phase"] in ("ready", "failed"), events
    return events


async def check_ready(events: list[Event]) -> Event:
    """The ``ready`` event, after checking its fields and that its jupyter-server accepts its token."""
    ready = events[-1]
    assert ready["phase"] == "ready", events
    missing = [f for f in READY_FIELDS if not ready.get(f)]
    assert missing == [], (missing, ready)
    assert ready["url"].startswith("http://127.0.0.1:") and ready["url"].endswith("/")
    assert all(e.get("member") for e in events), "every event names its member"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        headers = {"Authorization": f"token {ready['token']}"}
        async with http.get(f"{ready['url']}api/status", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert "started" in await resp.json()
        async with http.get(f"{ready['url']}api/status") as resp:
            assert resp.status in (401, 403), "the server must want its token"
    return ready


async def route(base_url: str, spec: str, data: tuple[str, ...] = (), provider: str = "git") -> dict[str, Any]:
    """``GET /api/v1/route``: the dry-run decision."""
    query = urlencode([("provider", provider), ("spec", spec), *[("data", d) for d in data]])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(f"{base_url}/api/v1/route?{query}") as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())


def candidate(decision: dict[str, Any], member_id: str) -> dict[str, Any]:
    return next(c for c in decision["candidates"] if c["member_id"] == member_id)


async def wait_for_route(
    base_url: str, spec: str, predicate: Callable[[dict[str, Any]], bool], what: str,
    data: tuple[str, ...] = (), timeout: float = 15.0, provider: str = "git",
) -> dict[str, Any]:
    """Dry-run until ``predicate(decision)`` holds (the broker learns from its next polls)."""
    deadline = time.monotonic() + timeout
    decision: dict[str, Any] = {}
    while time.monotonic() < deadline:
        decision = await route(base_url, spec, data, provider)
        if predicate(decision):
            return decision
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout:g} s: {json.dumps(decision, indent=1)}")
