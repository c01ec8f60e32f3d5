"""Enrollment routes: members apply with ``POST /api/v1/enroll``; admins mint one-time tokens."""

from __future__ import annotations

from aiohttp import web

from ...appkeys import ADMIN, ENROLLMENT
from ...jsonbody import read_body, read_json
from ...registry.admin import EnrollTokenCreate, enroll_token_view
from ...registry.enrollment import SIGNATURE_HEADER
from ..adminauth import require_admin
from ..limits import check_enrollment_rate

routes = web.RouteTableDef()


@routes.post("/api/v1/enroll")
async def enroll(request: web.Request) -> web.Response:
    """A new member's application, signed by its own key (proof of possession)."""
    check_enrollment_rate(request)
    result = await request.app[ENROLLMENT].enroll(
        authorization=request.headers.get("Authorization"),
        path_qs=request.raw_path,
        body=await read_body(request),
    )
    return web.Response(
        body=result.body,
        status=201,
        content_type="application/json",
        headers={SIGNATURE_HEADER: result.signature},
    )


@routes.post("/api/v1/enroll-tokens")
async def create_enroll_token(request: web.Request) -> web.Response:
    """Mint a one-time enrollment token; the answer is the only time its secret is shown."""
    admin = await require_admin(request, "tokens:write")
    body = await read_json(request, EnrollTokenCreate)
    token, row = await request.app[ADMIN].create_enroll_token(admin, body)
    return web.json_response(
        {
            "token": str(token),
            "id": row.id,
            "name": row.name,
            "broker_kid": row.broker_kid,
            "auto_approve": row.auto_approve,
            "expires_at": row.expires_at,
        },
        status=201,
    )


@routes.get("/api/v1/enroll-tokens")
async def list_enroll_tokens(request: web.Request) -> web.Response:
    """Every enrollment token's id, name and state (used, revoked, expiry); never a secret."""
    await require_admin(request, "tokens:write")
    rows = await request.app[ADMIN].list_enroll_tokens()
    return web.json_response({"tokens": [enroll_token_view(row) for row in rows]})


@routes.delete("/api/v1/enroll-tokens/{id}")
async def revoke_enroll_token(request: web.Request) -> web.Response:
    """Revoke an unused enrollment token; a used one is shown as it is (revoke its member instead)."""
    admin = await require_admin(request, "tokens:write")
    row = await request.app[ADMIN].revoke_enroll_token(admin, request.match_info["id"])
    return web.json_response(enroll_token_view(row))
