"""The broker's key rotation routes: the signed key set members refresh, and its rotation status."""

from __future__ import annotations

from aiohttp import web

from ...appkeys import CLOCK, CONFIG, KEYRING
from ..adminauth import require_admin

routes = web.RouteTableDef()


@routes.get("/api/v1/broker-keys")
async def signed_key_set(request: web.Request) -> web.Response:
    """Every published broker key, signed by a key every member already pins (public: it is signed)."""
    app = request.app
    signed = app[KEYRING].signed_key_set(app[CONFIG].broker_id, app[CLOCK])
    return web.json_response({"signed": signed}, headers={"Cache-Control": "no-store"})


@routes.get("/api/v1/broker-keys/status")
async def rotation_status(request: web.Request) -> web.Response:
    """Which key signs, and which members do not pin each key yet (admin, members:read)."""
    await require_admin(request, "members:read")
    return web.json_response(request.app[KEYRING].status())
