"""Admin routes for admin tokens (``/api/v1/admin-tokens``): mint one (shown once), list, revoke."""

from __future__ import annotations

from aiohttp import web

from ...appkeys import ADMIN
from ...jsonbody import read_json
from ...registry.admin import AdminTokenCreate
from ..adminauth import require_admin

routes = web.RouteTableDef()


@routes.post("/api/v1/admin-tokens")
async def create_admin_token(request: web.Request) -> web.Response:
    """A new admin token with at most the caller's scopes; its secret is in this answer only."""
    admin = await require_admin(request, "tokens:write")
    body = await read_json(request, AdminTokenCreate)
    secret, row = await request.app[ADMIN].create_admin_token(admin, body)
    return web.json_response(
        {"token": secret, "id": row.id, "name": row.name, "scopes": sorted(row.scopes), "expires_at": row.expires_at},
        status=201,
    )


@routes.get("/api/v1/admin-tokens")
async def list_admin_tokens(request: web.Request) -> web.Response:
    """Every admin token's id, name, scopes and times (never a secret: only hashes are stored)."""
    await require_admin(request, "tokens:write")
    rows = await request.app[ADMIN].list_admin_tokens()
    return web.json_response({"tokens": [row.public() for row in rows]})


@routes.delete("/api/v1/admin-tokens/{id}")
async def revoke_admin_token(request: web.Request) -> web.Response:
    """Revoke a token at once; only one holding no scope the caller lacks. Revoking twice is fine."""
    admin = await require_admin(request, "tokens:write")
    row = await request.app[ADMIN].revoke_admin_token(admin, request.match_info["id"])
    return web.json_response(row.public())
