"""The composition root: the one place that builds the broker's services, wires them together
and gives each long-lived resource its lifetime (``cleanup_ctx``).

Services (``registry/``, ``routing/``, ``launch/``) take what they need as constructor
arguments and never read application state; only this module and ``web/`` touch ``appkeys``.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, suppress
from typing import Any, AsyncIterator, Coroutine

import aiohttp
from aiohttp import web

from fedproto.clock import Clock, SystemClock
from fedproto.keys import KeyDir, KeyRing
from fedproto.member import MemberState
from fedproto.replay import ReplayCache

from .appkeys import (
    ADMIN,
    CANARY,
    CLIENT_LIMITS,
    CLOCK,
    CONFIG,
    DISPATCHER,
    ENROLLMENT,
    HEALTH,
    KEYRING,
    MEMBER_CLIENT,
    MEMBER_KEYS,
    METRICS,
    POLLER,
    REGISTRY,
    RELAY,
    REPLAY,
    SLO,
    SNAPSHOT,
    TICKETS,
)
from .registry.admin import AdminService
from .registry.brokerkeys import BrokerKeys
from .registry.enrollment import Enrollment
from .registry.memberkeys import MemberKeys
from .config import BrokerConfig
from .errors import announce_protocol, error_middleware
from .launch.canary import CanaryRunner, canary_repo
from .launch.memberclient import MemberClient, guarded_resolver, new_session
from .launch.poller import Poller
from .launch.pollshare import PollSharing
from .launch.redirect import TicketIssuer
from .launch.relay import LaunchRelay
from .metrics import BrokerMetrics
from .registry.pollstore import PollStore
from .registry.service import Registry
from .registry.snapshot import SnapshotHolder
from .registry.store import RegistryStore
from .routing.dispatcher import Dispatcher
from .routing.health import HealthTable
from .routing.slo import SloTracker
from .routing.ratelimit import ClientLimits
from .web import routes as web_routes


def make_app(config: BrokerConfig, *, clock: Clock | None = None, keyring: KeyRing | None = None,
             poll: bool = True) -> web.Application:
    """Build the broker app. Every long-lived resource lives in a ``cleanup_ctx``.

    ``poll=False`` leaves the health poller out (tests that feed health directly).
    """
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=config.max_body_bytes)
    app.on_response_prepare.append(announce_protocol)
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    if keyring is not None:  # injected keys stay fixed; keys from keys_dir follow the directory
        app[KEYRING] = BrokerKeys(KeyDir(None, keyring))
    else:
        keys_dir = config.resolve(config.keys_dir)
        app[KEYRING] = BrokerKeys(KeyDir(keys_dir, KeyRing.load_or_create(keys_dir)))
    app[SNAPSHOT] = SnapshotHolder()
    app[REPLAY] = ReplayCache()  # member-signed requests to the broker (enrollment, key rotation)
    app.cleanup_ctx.append(_registry_ctx)  # first: health and routing read its snapshot
    add_front_door(app, poll=poll)
    return app


def add_front_door(app: web.Application, *, poll: bool = True) -> None:
    """Health, routing, the member client, the relay, the poller and every route.

    Needs ``CONFIG``, ``CLOCK``, ``KEYRING`` and ``SNAPSHOT`` set; tests that hold the snapshot
    still call this without a registry.
    """
    config = app[CONFIG]
    canary_repo(config.canary, dev=config.dev)  # a bad canary.repo stops the start here, with its reason
    app[HEALTH] = HealthTable(config.health, app[CLOCK])
    app[SLO] = SloTracker(app[CLOCK])
    app[METRICS] = BrokerMetrics(app[HEALTH].views)
    app[DISPATCHER] = Dispatcher(config, app[SNAPSHOT], app[HEALTH], app[METRICS], app[CLOCK])
    app[TICKETS] = TicketIssuer(app[KEYRING], config.broker_id, app[CLOCK])
    if isinstance(app.get(KEYRING), BrokerKeys):
        app[KEYRING].bind_pins(lambda: _member_pins(app), lambda: app[SNAPSHOT].current)
    app[CLIENT_LIMITS] = ClientLimits.of(config.rate_limit, app[CLOCK])
    app.cleanup_ctx.append(_member_client_ctx)
    app.cleanup_ctx.append(_relay_ctx)
    if poll:
        app.cleanup_ctx.append(_poller_ctx)
        app.cleanup_ctx.append(_canary_ctx)
    web_routes.add_routes(app, config)


def _member_pins(app: web.Application) -> dict[str, list[str] | None]:
    """Each polled member's pinned broker key ids, from its latest ad (None: not said yet)."""
    health = app[HEALTH]
    pins: dict[str, list[str] | None] = {}
    for entry in app[SNAPSHOT].current.in_states(MemberState.active, MemberState.draining):
        state = health.get(entry.id)
        pins[entry.id] = state.ad.broker_kids if state is not None and state.ad is not None else None
    return pins


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store, load the first snapshot, run the refresh loop; undo it all on cleanup."""
    config = app[CONFIG]
    store = await RegistryStore.open(config.resolved_db_url, app[CLOCK], upgrade=config.migrate_on_start)
    try:
        registry = Registry(store, app[SNAPSHOT], app[CLOCK])
        await registry.refresh()
        app[REGISTRY] = registry
        app[ADMIN] = AdminService(registry, config, app[KEYRING])
        app[ENROLLMENT] = Enrollment(registry, config, app[KEYRING], app[CLOCK], app[REPLAY])
        app[MEMBER_KEYS] = MemberKeys(registry, config.broker_id, app[CLOCK], app[REPLAY])
        async with _background(registry.watch(config.snapshot_refresh), "registry-watch"):
            yield
    finally:
        await store.close()


async def _member_client_ctx(app: web.Application) -> AsyncIterator[None]:
    """One shared session to members for the app's lifetime, closed on shutdown."""
    async with new_session(app[CONFIG]) as session:
        app[MEMBER_CLIENT] = MemberClient(app[CONFIG], app[KEYRING], app[CLOCK], session)
        try:
            yield
        finally:
            await app[MEMBER_CLIENT].close()


async def _relay_ctx(app: web.Application) -> AsyncIterator[None]:
    # The relay needs the member client, which only exists inside its cleanup_ctx.
    app[RELAY] = LaunchRelay(
        app[MEMBER_CLIENT], app[HEALTH], app[METRICS], app[CONFIG].routing, app[CLOCK],
        launch_host=app[CONFIG].public_url, slo=app[SLO],
    )
    yield
    await app[RELAY].close()  # abandoned launches' DELETEs, before the member client closes


async def _poller_ctx(app: web.Application) -> AsyncIterator[None]:
    """Poll members for the app's lifetime; cancel and await the loop on shutdown. Replicas on one
    database split the members and share the results (``launch/pollshare.py``)."""
    config = app[CONFIG]
    mode = config.health.share_polls
    share = REGISTRY in app and (mode == "on" or (mode == "auto" and config.resolved_db_url.startswith("postgresql")))
    if not share:
        poller = app[POLLER] = Poller(app[SNAPSHOT], app[HEALTH], app[MEMBER_CLIENT], config.health, app[CLOCK])
        async with _background(poller.run(), "fedbroker-poller"):
            yield
        return
    sharing = PollSharing(PollStore(app[REGISTRY].store.engine), app[HEALTH], config.health, app[CLOCK])
    poller = app[POLLER] = Poller(app[SNAPSHOT], app[HEALTH], app[MEMBER_CLIENT], config.health, app[CLOCK],
                                  owns=sharing.owns, on_result=sharing.published)
    await sharing.exchange()  # join before polling: the live replicas decide who polls what
    async with _background(sharing.run(), "fedbroker-poll-sharing"), _background(poller.run(), "fedbroker-poller"):
        yield


async def _canary_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run canaries for the app's lifetime when ``canary.repo`` is set; cancel and await them on shutdown."""
    config = app[CONFIG]
    repo = canary_repo(config.canary, dev=config.dev)
    if repo is None:
        yield
        return
    # Its own session: the check talks to notebook servers, not agents, and must not share their pool.
    # Resolved through the same guard as agent calls: a member's public host must not resolve inside.
    connector = aiohttp.TCPConnector(resolver=guarded_resolver(config))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), connector=connector) as http:
        runner = CanaryRunner(config.canary, repo, app[SNAPSHOT], app[HEALTH], app[MEMBER_CLIENT], app[METRICS],
                              app[CLOCK], http)
        app[CANARY] = runner
        async with _background(runner.run(), "fedbroker-canary"):
            yield


@asynccontextmanager
async def _background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coro`` as a task while the block runs; cancel and await it after."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
