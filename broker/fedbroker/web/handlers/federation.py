"""``GET /api/v1/federation``: the public summary of members (no secrets, no agent URLs); and
``GET /api/v1/providers``: the provider table (fedproto.providers) the launch form is built from."""

from __future__ import annotations

from aiohttp import web

from fedproto.providers import provider_table

from ...appkeys import CLOCK, HEALTH, SLO, SNAPSHOT
from ..summary import federation_summary

routes = web.RouteTableDef()


@routes.get("/api/v1/federation")
async def federation(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(federation_summary(app[SNAPSHOT].current, app[HEALTH].views(), now=app[CLOCK].now(),
                                                  slo=app[SLO]))


@routes.get("/api/v1/providers")
async def providers(request: web.Request) -> web.Response:
    """Every provider prefix with its name, form label and placeholder, and how a typed URL becomes a spec."""
    return web.json_response({"providers": provider_table()}, headers={"Cache-Control": "public, max-age=3600"})
