"""Wiring of health, routing and the front door into the broker app (one call from ``make_app``)."""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from .appkeys import CLOCK, CONFIG, DISPATCHER, HEALTH, MEMBER_CLIENT, METRICS, RELAY, SNAPSHOT
from .dispatcher import Dispatcher
from .handlers import federation, frontdoor, launchpage, pages, route, system
from .health import HealthTable
from .memberclient import member_client_ctx
from .metrics import BrokerMetrics
from .poller import poller_ctx
from .relay import LaunchRelay


async def _relay_ctx(app: web.Application) -> AsyncIterator[None]:
    # The relay needs the member client, which only exists inside its cleanup_ctx.
    app[RELAY] = LaunchRelay(
        app[MEMBER_CLIENT], app[HEALTH], app[METRICS], app[CONFIG].routing, app[CLOCK],
        launch_host=app[CONFIG].public_url,
    )
    yield


def setup_front_door(app: web.Application, *, poll: bool = True) -> None:
    """Health, polling, routing, relay and the public routes. Call after the registry is set up.

    ``poll=False`` leaves the poller out (tests that feed health directly).
    """
    config = app[CONFIG]
    app[HEALTH] = HealthTable(config.health, app[CLOCK])
    app[METRICS] = BrokerMetrics(app[HEALTH].views)
    app[DISPATCHER] = Dispatcher(config, app[SNAPSHOT], app[HEALTH], app[METRICS], app[CLOCK])
    app.cleanup_ctx.append(member_client_ctx)
    app.cleanup_ctx.append(_relay_ctx)
    if poll:
        app.cleanup_ctx.append(poller_ctx)
    for module in (frontdoor, route, system, federation):
        app.add_routes(module.routes)
    pages.add_routes(app)  # home, status, badge and static files, in both modes
    if config.mode == "redirect":
        app.router.add_get("/v2/{provider}/{spec:.+}", frontdoor.v2_redirect)
    else:
        launchpage.add_routes(app)
