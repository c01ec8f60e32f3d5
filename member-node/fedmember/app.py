"""The agent's application factory: wires config, keys, backend and services into aiohttp."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import AsyncIterator

from aiohttp import web

from fedproto.clock import Clock, SystemClock
from fedproto.keys import KeyDir, KeyRing, PublicKeySet
from fedproto.replay import ReplayCache

from . import appkeys, serverproxy
from .auth import auth_middleware
from .backends import backend_class
from .backends.base import Backend, BackendContext
from .brokertrust import BrokerTrust
from .config import MemberConfig
from .errors import announce_protocol, error_middleware
from .handlers import routes
from .healthcheck import HealthService
from .launches import KEEPALIVE_INTERVAL, LaunchService
from .metrics import AgentMetrics
from .publiclaunch import routes as public_routes
from .statusad import StatusAdvertiser

log = logging.getLogger(__name__)


def make_backend(config: MemberConfig, clock: Clock, dev: bool) -> Backend:
    """The configured backend, told about the site through its context."""
    context = BackendContext(
        member_id=config.member.id,
        state_dir=config.state_dir,
        public_url=config.member.public_url,
        dev=dev,
        fetch_allow=list(config.member.fetch_allow),
        datasets=list(config.member.datasets),
        cors_allow_origins=list(config.member.cors_allow_origins),
        clock=clock,
        ca_bundle=config.ca_bundle,
    )
    return backend_class(config.backend.kind)(config.backend, context)


def make_app(
    config: MemberConfig,
    *,
    backend: Backend | None = None,
    member_keys: KeyRing | None = None,
    broker_keys: PublicKeySet | None = None,
    clock: Clock | None = None,
    dev: bool | None = None,
    keepalive_interval: float = KEEPALIVE_INTERVAL,
) -> web.Application:
    """The agent. Keys default to the files beside the config; ``dev`` to ``[member] dev``."""
    clock = clock or SystemClock()
    dev = config.member.dev if dev is None else dev
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=config.member.max_body_bytes,
    )
    app.on_response_prepare.append(announce_protocol)
    backend = backend or make_backend(config, clock, dev)
    metrics = AgentMetrics()
    health = HealthService(backend, clock)
    # Injected keys stay fixed; keys read from keys/ follow the directory (live rotation).
    keys = KeyDir(None, member_keys) if member_keys is not None else KeyDir(config.keys_dir, config.load_keys())
    app[appkeys.CONFIG] = config
    app[appkeys.CLOCK] = clock
    app[appkeys.MEMBER_KEYS] = keys
    pinned = broker_keys if broker_keys is not None else config.load_broker_keys()
    app[appkeys.BROKER_KEYS] = BrokerTrust(config, pinned, clock, persist=broker_keys is None)
    app[appkeys.REPLAY] = ReplayCache()
    app[appkeys.BACKEND] = backend
    app[appkeys.METRICS] = metrics
    app[appkeys.HEALTH] = health
    app[appkeys.LAUNCHES] = LaunchService(
        backend, metrics, launch_timeout=config.member.launch_timeout, dev=dev, keepalive_interval=keepalive_interval
    )
    app[appkeys.STATUS] = StatusAdvertiser(config, backend, health, keys, clock, app[appkeys.BROKER_KEYS])
    app.add_routes(routes)
    app.add_routes(public_routes)
    serverproxy.mount(app)
    app.cleanup_ctx.append(_backend_lifetime)
    app.cleanup_ctx.append(_broker_key_refresh)
    app.on_shutdown.append(_end_streams)
    return app


async def _backend_lifetime(app: web.Application) -> AsyncIterator[None]:
    backend = app[appkeys.BACKEND]
    await backend.start()
    try:
        adopted = await backend.adopt()
        if adopted:
            log.info("adopted %d server(s) a previous agent left running", len(adopted))
        yield
    finally:
        # detach(), not stop(): a restart (upgrade, drain) must not end users' sessions on a
        # backend that can adopt them; the default detach() stops everything.
        await backend.detach()


async def _broker_key_refresh(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[appkeys.BROKER_KEYS].run(), name="fedmember-broker-keys")
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def _end_streams(app: web.Application) -> None:
    await app[appkeys.LAUNCHES].shutdown()
