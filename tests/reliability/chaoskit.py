"""Helpers for the chaos test: a steady launch load against a demo federation, and log checks.

The load runs in its own thread and event loop (the federation's child processes must be
started and restarted from the test's main thread). Every launch reads the broker's event
stream to its end; a ``ready`` launch's server is then stopped at its member with a
broker-signed DELETE, so the members' small capacities are not used up by the load.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing
from fedproto.tokens import sign_request

LAUNCH_TIMEOUT = 90.0


@dataclass
class Launch:
    """One launch: when it started and ended, and its last event."""

    started: float
    ended: float = 0.0
    phase: str = "none"
    member: str | None = None
    message: str = ""


@dataclass
class LaunchLoad:
    """Starts a launch every ``every`` seconds, at most ``concurrency`` at once, until stopped."""

    broker_url: str
    path: str
    agents: dict[str, str]  # member id -> agent URL
    broker_dir: Path
    every: float = 1.0
    concurrency: int = 3
    launches: list[Launch] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="launch-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = LAUNCH_TIMEOUT + 30) -> None:
        """Stop starting launches and wait for the ones in flight to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "launches still running after the load was stopped"

    async def _run(self) -> None:
        keyring = KeyRing.load_or_create(self.broker_dir / "keys")
        limit = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LAUNCH_TIMEOUT)) as http:
            while not self._stop.is_set():
                await limit.acquire()
                tasks.append(asyncio.create_task(self._one(http, keyring, limit)))
                await asyncio.sleep(self.every)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, http: aiohttp.ClientSession, keyring: KeyRing, limit: asyncio.Semaphore) -> None:
        launch = Launch(started=time.time())
        self.launches.append(launch)
        try:
            async with http.get(self.broker_url + self.path, headers={"Accept": "text/event-stream"}) as resp:
                async for raw in resp.content:
                    if raw.startswith(b"data:"):
                        event = json.loads(raw[5:])
                        launch.phase, launch.member = event["phase"], event.get("member")
                        launch.message = event.get("message", "")
                        if event["phase"] == "ready":
                            await self._stop_server(http, keyring, event)
            launch.ended = time.time()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            launch.ended, launch.phase, launch.message = time.time(), "client-error", repr(exc)
        finally:
            limit.release()

    async def _stop_server(self, http: aiohttp.ClientSession, keyring: KeyRing, event: dict[str, str]) -> None:
        member, launch_id = event.get("member"), event.get("launch_id")
        agent = self.agents.get(member or "")
        if agent is None or not launch_id:
            return
        path = f"/api/v1/launches/{launch_id}"
        token = sign_request(keyring.signing_key, issuer="demo", audience=member or "", method="DELETE",
                             path_qs=path, body=b"", clock=SystemClock())
        try:
            async with http.delete(agent + path, headers={"Authorization": f"Bearer {token}"}):
                pass
        except aiohttp.ClientError:
            pass  # killed meanwhile: its servers were swept with it


_HEALTH = re.compile(r"member (\S+) health (\w+) -> (\w+)")
_DECISION = re.compile(r"decision (\S+) repo=\S+ chosen=(\S+)")


def decisions_to_failed_members(broker_log: str) -> list[str]:
    """Decisions that chose a member while the broker's last word on it was "unhealthy".

    The broker log is written by one process in order, so line order is the order in which
    the broker saw a member fail and made each decision.
    """
    down: set[str] = set()
    bad = []
    for line in broker_log.splitlines():
        if m := _HEALTH.search(line):
            member, new = m.group(1), m.group(3)
            (down.add if new == "unhealthy" else down.discard)(member)
        elif (m := _DECISION.search(line)) and m.group(2) in down:
            bad.append(line)
    return bad
