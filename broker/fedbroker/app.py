"""The broker application factory: state, components and their lifetimes, kept apart from main()."""

from __future__ import annotations

from aiohttp import web

from fedproto.clock import Clock, SystemClock
from fedproto.keys import KeyRing

from .appkeys import CLOCK, CONFIG, KEYRING, SNAPSHOT
from .config import BrokerConfig
from .errors import error_middleware
from .handlers import admintokens as admin_token_handlers
from .handlers import enroll as enroll_handlers
from .handlers import members as member_handlers
from .registry import setup_registry
from .snapshot import SnapshotHolder
from .wiring import setup_front_door


def make_app(config: BrokerConfig, *, clock: Clock | None = None, keyring: KeyRing | None = None) -> web.Application:
    """Build the broker app. Every long-lived resource lives in a ``cleanup_ctx``."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[KEYRING] = keyring or KeyRing.load_or_create(config.resolve(config.keys_dir))
    app[SNAPSHOT] = SnapshotHolder()
    # Components add their state, routes and background work here, in dependency order.
    setup_registry(app)  # the registry first: health and routing read its snapshot
    setup_front_door(app)  # health polling, routing, launch relay and the public routes
    app.add_routes(enroll_handlers.routes)
    app.add_routes(member_handlers.routes)
    app.add_routes(admin_token_handlers.routes)
    return app
