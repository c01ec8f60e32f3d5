"""Admin routes for members (``/api/v1/members``) and member key rotation. Reads come from the snapshot."""

from __future__ import annotations

from aiohttp import web

from fedproto.member import MemberRecord

from ...appkeys import CLOCK, CONFIG, KEYRING, REGISTRY, REPLAY
from ...errors import NotFound
from ...jsonbody import read_body, read_json
from ...registry.admin import AdminService, MemberCreate, MemberPatch
from ...registry.lifecycle import parse_action
from ...registry.memberkeys import MemberKeys
from ..adminauth import require_admin

routes = web.RouteTableDef()


def _admin_service(request: web.Request) -> AdminService:
    app = request.app
    return AdminService(app[REGISTRY], app[CONFIG], app[KEYRING])


def _keys_service(request: web.Request) -> MemberKeys:
    app = request.app
    return MemberKeys(app[REGISTRY], app[CONFIG].broker_id, app[CLOCK], app[REPLAY])


def _render(record: MemberRecord, status: int = 200) -> web.Response:
    return web.json_response(record.model_dump(mode="json"), status=status)


@routes.get("/api/v1/members")
async def list_members(request: web.Request) -> web.Response:
    await require_admin(request, "members:read")
    snapshot = request.app[REGISTRY].snapshot
    members = [snapshot.members[k].record.model_dump(mode="json") for k in sorted(snapshot.members)]
    return web.json_response({"revision": snapshot.revision, "members": members})


@routes.post("/api/v1/members")
async def create_member(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    body = await read_json(request, MemberCreate)
    return _render(await _admin_service(request).create_member(admin, body), status=201)


@routes.get("/api/v1/members/{id}")
async def get_member(request: web.Request) -> web.Response:
    await require_admin(request, "members:read")
    member_id = request.match_info["id"]
    entry = request.app[REGISTRY].snapshot.members.get(member_id)
    if entry is None:
        raise NotFound(f"no member with id {member_id!r}", reason="unknown_member")
    return _render(entry.record)


@routes.patch("/api/v1/members/{id}")
async def patch_member(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    patch = await read_json(request, MemberPatch)
    return _render(await _admin_service(request).update_member(admin, request.match_info["id"], patch))


@routes.delete("/api/v1/members/{id}")
async def remove_member(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    return web.json_response(await _admin_service(request).remove(admin, request.match_info["id"]))


@routes.post("/api/v1/members/{id}/{action:approve|drain|undrain|disable}")
async def member_action(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    action = parse_action(request.match_info["action"])
    return _render(await _admin_service(request).transition(admin, request.match_info["id"], action))


@routes.post("/api/v1/members/{id}/keys")
async def add_member_keys(request: web.Request) -> web.Response:
    """Key rotation by the member itself: signed by one of its current keys."""
    record = await _keys_service(request).add(
        request.match_info["id"],
        authorization=request.headers.get("Authorization"),
        path_qs=request.raw_path,
        body=await read_body(request),
    )
    return _render(record)


@routes.delete("/api/v1/members/{id}/keys/{kid}")
async def revoke_member_key(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    record = await _keys_service(request).revoke(admin, request.match_info["id"], request.match_info["kid"])
    return _render(record)
