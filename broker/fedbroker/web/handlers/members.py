"""Admin routes for members (``/api/v1/members``) and member key rotation. Reads come from the snapshot."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fedproto.member import MemberRecord

from ...appkeys import ADMIN, CLOCK, HEALTH, MEMBER_KEYS, REGISTRY
from ...errors import NotFound
from ...metrics import health_label
from ...jsonbody import read_body, read_json
from ...registry.admin import MemberCreate, MemberPatch
from ...registry.lifecycle import parse_action
from ...registry.snapshot import MemberEntry
from ...routing.facts import unroutable_reason
from ...registry.adminauth import ADMIN_TOKEN_PREFIX
from ..adminauth import require_admin

routes = web.RouteTableDef()


def _render(record: MemberRecord, status: int = 200) -> web.Response:
    return web.json_response(record.model_dump(mode="json"), status=status)


def _health(request: web.Request, entry: MemberEntry) -> dict[str, Any]:
    """What the broker sees of the member now (admins see the full last poll error)."""
    view = request.app[HEALTH].view(entry.id)
    why = unroutable_reason(entry, view, None)
    health: dict[str, Any] = {"state": health_label(view) if view is not None else "unknown",
                              "routable": why is None, "reason": why}
    if view is not None:
        health.update(
            load=view.load, free=view.free if view.ad is not None else None,
            capacity=view.ad.capacity.model_dump() if view.ad is not None else None,
            last_poll_at=view.last_poll_at, last_poll_ok=view.last_poll_ok, last_error=view.last_error,
        )
    return health


@routes.get("/api/v1/members")
async def list_members(request: web.Request) -> web.Response:
    await require_admin(request, "members:read")
    snapshot = request.app[REGISTRY].snapshot
    members = [snapshot.members[k].record.model_dump(mode="json") for k in sorted(snapshot.members)]
    health = {k: _health(request, snapshot.members[k]) for k in sorted(snapshot.members)}
    return web.json_response({"revision": snapshot.revision, "members": members, "health": health,
                              "now": request.app[CLOCK].now()})


@routes.post("/api/v1/members")
async def create_member(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    body = await read_json(request, MemberCreate)
    return _render(await request.app[ADMIN].create_member(admin, body), status=201)


@routes.get("/api/v1/members/{id}")
async def get_member(request: web.Request) -> web.Response:
    await require_admin(request, "members:read")
    member_id = request.match_info["id"]
    entry = request.app[REGISTRY].snapshot.members.get(member_id)
    if entry is None:
        raise NotFound(f"no member with id {member_id!r}", reason="unknown_member")
    return _render(entry.record)


@routes.get("/api/v1/members/{id}/health")
async def get_member_health(request: web.Request) -> web.Response:
    """Health, load, last poll and the last poll's failure reason, as the broker sees them now."""
    await require_admin(request, "members:read")
    member_id = request.match_info["id"]
    entry = request.app[REGISTRY].snapshot.members.get(member_id)
    if entry is None:
        raise NotFound(f"no member with id {member_id!r}", reason="unknown_member")
    return web.json_response({**_health(request, entry), "now": request.app[CLOCK].now()})


@routes.patch("/api/v1/members/{id}")
async def patch_member(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    patch = await read_json(request, MemberPatch)
    return _render(await request.app[ADMIN].update_member(admin, request.match_info["id"], patch))


@routes.delete("/api/v1/members/{id}")
async def remove_member(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    return web.json_response(await request.app[ADMIN].remove(admin, request.match_info["id"]))


@routes.post("/api/v1/members/{id}/{action:approve|drain|undrain|disable}")
async def member_action(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    action = parse_action(request.match_info["action"])
    return _render(await request.app[ADMIN].transition(admin, request.match_info["id"], action))


@routes.post("/api/v1/members/{id}/keys")
async def add_member_keys(request: web.Request) -> web.Response:
    """Key rotation by the member itself: signed by one of its current keys."""
    record = await request.app[MEMBER_KEYS].add(
        request.match_info["id"],
        authorization=request.headers.get("Authorization"),
        path_qs=request.raw_path,
        body=await read_body(request),
    )
    return _render(record)


@routes.delete("/api/v1/members/{id}/keys/{kid}")
async def revoke_member_key(request: web.Request) -> web.Response:
    """An admin revokes a key, or the member retires one of its own (signed by another of its keys)."""
    member_id, kid = request.match_info["id"], request.match_info["kid"]
    authorization = request.headers.get("Authorization") or ""
    if authorization.partition(" ")[2].strip().startswith(ADMIN_TOKEN_PREFIX):
        admin = await require_admin(request, "members:write")
        return _render(await request.app[MEMBER_KEYS].revoke(admin, member_id, kid))
    record = await request.app[MEMBER_KEYS].retire_own(
        member_id, kid, authorization=authorization or None, path_qs=request.raw_path
    )
    return _render(record)
