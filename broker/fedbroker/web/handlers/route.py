"""``GET /api/v1/route``: a dry-run routing decision with every candidate's cost parts and reason."""

from __future__ import annotations

from aiohttp import web

from fedproto.repospec import RepoSpec

from ...appkeys import CONFIG, DISPATCHER
from ...errors import BadRequest, Forbidden
from .frontdoor import checked_data

routes = web.RouteTableDef()


@routes.get("/api/v1/route")
async def route(request: web.Request) -> web.Response:
    """What a launch of ``provider``/``spec`` (with ``data``) would do now; launches nothing."""
    provider, spec = request.query.get("provider", ""), request.query.get("spec", "")
    if not provider or not spec:
        raise BadRequest("give ?provider= and ?spec= (e.g. provider=gh&spec=org/repo/HEAD)", reason="missing_parameter")
    # The launch's own rules (frontdoor.checked_data): a dry run answers what a launch would.
    data = checked_data(request.query.getall("data", []))  # SpecError -> 400 JSON
    repo = RepoSpec.parse(provider, spec, allow_file=request.app[CONFIG].dev)  # SpecError -> 400/404 JSON
    dispatcher = request.app[DISPATCHER]
    refusal = dispatcher.spec_refusal(repo.provider, repo.spec)
    if refusal is not None:
        raise Forbidden(refusal, reason="denied")
    region = request.query.get("region") or dispatcher.client_region(request.headers)
    decision = dispatcher.decide(repo, data, region=region, dry_run=True)
    return web.json_response(decision.model_dump(mode="json"))
