"""``GET /api/v1/federation``: the public summary of members (no secrets, no agent URLs)."""

from __future__ import annotations

from aiohttp import web

from ...appkeys import CLOCK, HEALTH, SLO, SNAPSHOT
from ..summary import federation_summary

routes = web.RouteTableDef()


@routes.get("/api/v1/federation")
async def federation(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(federation_summary(app[SNAPSHOT].current, app[HEALTH].views(), now=app[CLOCK].now(),
                                                  slo=app[SLO]))
