"""Every route of the broker, in one table: the API, the front door and the pages."""

from __future__ import annotations

from aiohttp import web

from ..config import BrokerConfig
from .handlers import (
    admintokens,
    enroll,
    federation,
    frontdoor,
    launchpage,
    members,
    pages,
    route,
    system,
)


def add_routes(app: web.Application, config: BrokerConfig) -> None:
    """Add the public, admin and page routes; ``/v2`` depends on the mode."""
    for module in (frontdoor, route, system, federation, enroll, members, admintokens):
        app.add_routes(module.routes)
    pages.add_routes(app)  # home, status, badge and static files, in both modes
    if config.mode == "redirect":
        app.router.add_get("/v2/{provider}/{spec:.+}", frontdoor.v2_redirect)
    else:
        launchpage.add_routes(app)
