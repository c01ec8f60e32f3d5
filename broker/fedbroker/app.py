"""The broker application factory: state, components and their lifetimes, kept apart from main()."""

from __future__ import annotations

from aiohttp import web

from fedproto.clock import Clock, SystemClock
from fedproto.keys import KeyRing

from .appkeys import CLOCK, CONFIG, KEYRING, SNAPSHOT
from .config import BrokerConfig
from .errors import error_middleware
from .snapshot import SnapshotHolder


def make_app(config: BrokerConfig, *, clock: Clock | None = None, keyring: KeyRing | None = None) -> web.Application:
    """Build the broker app. Every long-lived resource lives in a ``cleanup_ctx``."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[KEYRING] = keyring or KeyRing.load_or_create(config.resolve(config.keys_dir))
    app[SNAPSHOT] = SnapshotHolder()
    # Components add their state, routes and background work here, in dependency order.
    return app
