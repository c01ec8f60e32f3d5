"""Helpers for broker tests of health, routing and the front door: snapshots and a broker app
without the registry (its snapshot is set directly), so these tests stand on their own."""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType
from typing import Iterable

from aiohttp import web

from fedproto.clock import Clock
from fedproto.keys import KeyRing, PrivateKey

from fedbroker.appkeys import CLOCK, CONFIG, HEALTH, KEYRING, SNAPSHOT
from fedbroker.config import BrokerConfig
from fedbroker.errors import announce_protocol, error_middleware
from fedbroker.registry.snapshot import MemberEntry, RegistrySnapshot, SnapshotHolder
from fedbroker.app import add_front_door

from member_double import MemberDouble


def snapshot_of(entries: Iterable[MemberEntry], revision: int = 1) -> RegistrySnapshot:
    return RegistrySnapshot(revision=revision, members=MappingProxyType({e.id: e for e in entries}))


def new_keyring() -> KeyRing:
    return KeyRing([PrivateKey.generate()])


def broker_app(config: BrokerConfig, clock: Clock, keyring: KeyRing, snapshot: RegistrySnapshot) -> web.Application:
    """The broker's front door over a fixed snapshot, without the poller (tests feed health)."""
    app = web.Application(middlewares=[error_middleware])
    app.on_response_prepare.append(announce_protocol)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[KEYRING] = keyring
    app[SNAPSHOT] = SnapshotHolder(snapshot)
    add_front_door(app, poll=False)
    app[HEALTH].sync(snapshot.members)
    return app


def feed_health(app: web.Application, doubles: Iterable[MemberDouble]) -> None:
    """Record one passing poll of each double's current ad (as the poller would)."""
    for d in doubles:
        app[HEALTH].member(d.member_id).record_poll(d.ad() if d.healthy else None, None if d.healthy else "down")


def parse_stream(text: str) -> list[dict]:
    """The events of a whole event-stream body (comments dropped)."""
    import json

    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def fedbroker_command() -> list[str]:
    """How to run the ``fedbroker`` console script of this environment."""
    script = Path(sys.executable).parent / "fedbroker"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from fedbroker.cli.main import main; sys.exit(main())"]
