"""Dataset routes: declarations (``/api/v1/datasets``) by admins or dataset owners, and the owners.

A declaration is made with an admin token (``members:write``), or with a request token signed
by a registered dataset-owner key, for datasets under that owner's prefixes.
"""

from __future__ import annotations

from aiohttp import web

from fedproto.errors import TokenError
from fedproto.tokens import bearer

from ...appkeys import CLOCK, CONFIG, REGISTRY, REPLAY
from ...errors import BadRequest, Unauthorized
from ...jsonbody import parse_json, read_body
from ...registry.adminauth import ADMIN_TOKEN_PREFIX
from ...registry.datasetadmin import DatasetAdmin, DatasetDeclaration, DatasetOwnerCreate, owner_actor, rule_view
from ...registry.store import DatasetOwnerRow
from ..adminauth import require_admin

routes = web.RouteTableDef()


def _service(request: web.Request) -> DatasetAdmin:
    app = request.app
    return DatasetAdmin(app[REGISTRY], app[CONFIG], app[CLOCK], app[REPLAY])


async def _caller(request: web.Request, body: bytes) -> tuple[str, DatasetOwnerRow | None]:
    """(audit actor, owner or None for an admin): an admin token, else a signed owner request."""
    try:
        token = bearer(request.headers.get("Authorization"))
    except TokenError as exc:
        raise Unauthorized(exc.message, reason="missing_token") from None
    if token.startswith(ADMIN_TOKEN_PREFIX):
        return (await require_admin(request, "members:write")).actor, None
    owner = await _service(request).owner_of(token, method=request.method, path_qs=request.raw_path, body=body)
    return owner_actor(owner), owner


@routes.get("/api/v1/datasets")
async def list_datasets(request: web.Request) -> web.Response:
    await require_admin(request, "members:read")
    return web.json_response({"datasets": [rule_view(r) for r in await _service(request).rules()]})


@routes.post("/api/v1/datasets")
async def declare_dataset(request: web.Request) -> web.Response:
    """Declare or replace who holds a dataset and who may serve it (admin or the dataset's owner)."""
    body = await read_body(request)
    actor, owner = await _caller(request, body)
    rule = await _service(request).declare(actor, parse_json(body, DatasetDeclaration), owner)
    return web.json_response(rule_view(rule))


@routes.delete("/api/v1/datasets")
async def remove_dataset(request: web.Request) -> web.Response:
    """Remove the declaration for ``?id=``; routing then trusts no member's word on that dataset."""
    dataset_id = request.query.get("id", "")
    if not dataset_id or len(dataset_id) > 512:
        raise BadRequest("?id= names the dataset (at most 512 characters)", reason="bad_dataset_id")
    actor, owner = await _caller(request, b"")
    return web.json_response(await _service(request).remove(actor, dataset_id, owner))


@routes.get("/api/v1/dataset-owners")
async def list_owners(request: web.Request) -> web.Response:
    await require_admin(request, "members:read")
    return web.json_response({"owners": [o.public() for o in await _service(request).owners()]})


@routes.post("/api/v1/dataset-owners")
async def add_owner(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    body = parse_json(await read_body(request), DatasetOwnerCreate)
    owner = await _service(request).add_owner(admin.actor, body)
    return web.json_response(owner.public(), status=201)


@routes.delete("/api/v1/dataset-owners/{id}")
async def remove_owner(request: web.Request) -> web.Response:
    admin = await require_admin(request, "members:write")
    return web.json_response(await _service(request).remove_owner(admin.actor, request.match_info["id"]))
