"""Every route of the broker, in one table: the API, the front door and the pages."""

from __future__ import annotations

from aiohttp import web

from ..config import BrokerConfig
from .cors import setup_cors
from .limits import stream_limited
from .handlers import (
    admintokens,
    brokerkeys,
    datasets,
    enroll,
    federation,
    frontdoor,
    launchpage,
    members,
    pages,
    redirect,
    route,
    system,
)


def add_routes(app: web.Application, config: BrokerConfig) -> None:
    """Add the public, admin and page routes; ``/v2`` depends on the mode."""
    # The launch stream and its CORS preflight on one resource: the router tries one pattern per launch.
    build = app.router.add_resource("/build/{provider}/{spec:.+}")
    build.add_route("GET", redirect.build_redirect if config.mode == "redirect" else stream_limited(frontdoor.build))
    build.add_route("OPTIONS", frontdoor.build_preflight)
    for module in (route, system, federation, enroll, members, admintokens, brokerkeys, datasets):
        app.add_routes(module.routes)
    pages.add_routes(app)  # home, status, badge and static files, in both modes
    if config.mode == "redirect":
        app.router.add_get("/v2/{provider}/{spec:.+}", redirect.v2_redirect)
    else:
        launchpage.add_routes(app)
    # After the launch routes: every other /v2 URL gets the HTML page saying what a launch link is.
    app.router.add_get("/v2{tail:.*}", launchpage.bad_v2_url)
    setup_cors(app)
