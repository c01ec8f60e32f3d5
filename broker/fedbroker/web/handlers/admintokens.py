"""Admin route for admin tokens (``/api/v1/admin-tokens``): mint one, shown once."""

from __future__ import annotations

from aiohttp import web

from ...appkeys import CONFIG, KEYRING, REGISTRY
from ...jsonbody import read_json
from ...registry.admin import AdminService, AdminTokenCreate
from ..adminauth import require_admin

routes = web.RouteTableDef()


@routes.post("/api/v1/admin-tokens")
async def create_admin_token(request: web.Request) -> web.Response:
    """A new admin token with at most the caller's scopes; its secret is in this answer only."""
    admin = await require_admin(request, "tokens:write")
    body = await read_json(request, AdminTokenCreate)
    app = request.app
    secret, row = await AdminService(app[REGISTRY], app[CONFIG], app[KEYRING]).create_admin_token(admin, body)
    return web.json_response(
        {"token": secret, "id": row.id, "name": row.name, "scopes": sorted(row.scopes), "expires_at": row.expires_at},
        status=201,
    )
