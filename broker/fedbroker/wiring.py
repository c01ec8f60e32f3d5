"""Wiring of health, routing and the front door into the broker app (one call from ``make_app``)."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from .appkeys import CANARY, CLOCK, CONFIG, DISPATCHER, HEALTH, MEMBER_CLIENT, METRICS, RELAY, SLO, SNAPSHOT
from .canaryrunner import CanaryRunner, canary_repo
from .dispatcher import Dispatcher
from .handlers import federation, frontdoor, launchpage, pages, route, system
from .health import HealthTable
from .memberclient import member_client_ctx
from .metrics import BrokerMetrics
from .poller import poller_ctx
from .relay import LaunchRelay
from .slo import SloTracker


async def _relay_ctx(app: web.Application) -> AsyncIterator[None]:
    # The relay needs the member client, which only exists inside its cleanup_ctx.
    app[RELAY] = LaunchRelay(
        app[MEMBER_CLIENT], app[HEALTH], app[METRICS], app[CONFIG].routing, app[CLOCK],
        launch_host=app[CONFIG].public_url, slo=app[SLO],
    )
    yield


async def _canary_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run canaries for the app's lifetime (when canary.repo is set); cancel and await them on shutdown."""
    config = app[CONFIG]
    repo = canary_repo(config.canary, dev=config.dev)
    if repo is None:
        yield
        return
    # Its own session: the check talks to notebook servers, not agents, and must not share their pool.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        runner = CanaryRunner(config.canary, repo, app[SNAPSHOT], app[HEALTH], app[MEMBER_CLIENT], app[METRICS],
                              app[CLOCK], http)
        app[CANARY] = runner
        task = asyncio.create_task(runner.run(), name="fedbroker-canary")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def setup_front_door(app: web.Application, *, poll: bool = True) -> None:
    """Health, polling, routing, relay and the public routes. Call after the registry is set up.

    ``poll=False`` leaves the poller out (tests that feed health directly).
    """
    config = app[CONFIG]
    canary_repo(config.canary, dev=config.dev)  # a bad canary.repo stops the start here, with its reason
    app[HEALTH] = HealthTable(config.health, app[CLOCK])
    app[SLO] = SloTracker(app[CLOCK])
    app[METRICS] = BrokerMetrics(app[HEALTH].views)
    app[DISPATCHER] = Dispatcher(config, app[SNAPSHOT], app[HEALTH], app[METRICS], app[CLOCK])
    app.cleanup_ctx.append(member_client_ctx)
    app.cleanup_ctx.append(_relay_ctx)
    if poll:
        app.cleanup_ctx.append(poller_ctx)
        app.cleanup_ctx.append(_canary_ctx)
    for module in (frontdoor, route, system, federation):
        app.add_routes(module.routes)
    pages.add_routes(app)  # home, status, badge and static files, in both modes
    if config.mode == "redirect":
        app.router.add_get("/v2/{provider}/{spec:.+}", frontdoor.v2_redirect)
    else:
        launchpage.add_routes(app)
