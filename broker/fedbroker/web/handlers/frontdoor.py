"""The BinderHub-compatible front door: ``/build/{provider}/{spec}`` (and ``/v2/...`` in redirect mode).

Relay mode streams the chosen member's events (unnamed ``data:`` events, ``:keepalive``
comments, closed after ``ready``/``failed``). Redirect mode answers 307 to the member's
public URL with a sticky cookie, as mybinder.org's federation-redirect does. On this hot
path handlers return responses rather than raising HTTP exceptions.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from aiohttp import web

from fedproto.errors import SpecError
from fedproto.launch import MAX_DATASETS_PER_LAUNCH, LaunchEvent
from fedproto.repospec import RepoSpec
from fedproto.routing import RouteDecision
from fedproto.sse import KEEPALIVE, SSE_HEADERS, with_keepalives

from ...appkeys import CONFIG, DISPATCHER, RELAY
from ...errors import json_error
from ...launch.relay import LaunchTarget
from ...registry.snapshot import RegistrySnapshot
from ...routing.dispatcher import nothing_routable_message

routes = web.RouteTableDef()

EVENT_STREAM = "text/event-stream"
DECISION_HEADER = "X-Federation-Decision"


def raw_spec(request: web.Request, prefix: str) -> str:
    """The spec exactly as the client escaped it (match_info is unescaped, which breaks gl and git specs)."""
    path = request.raw_path.split("?", 1)[0]
    return path[len(f"/{prefix}/{request.match_info['provider']}/"):]


def cors_headers(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    allowed = request.app[CONFIG].cors_allow_origins
    if origin and (origin in allowed or "*" in allowed):
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def parse_target(request: web.Request, prefix: str) -> tuple[RepoSpec, list[str]]:
    """Provider, spec and ``?data=`` values, validated (raises SpecError)."""
    repo = RepoSpec.parse(request.match_info["provider"], raw_spec(request, prefix),
                          allow_file=request.app[CONFIG].dev)
    data = request.query.getall("data", [])
    if len(data) > MAX_DATASETS_PER_LAUNCH or any(not d.strip() or len(d) > 512 for d in data):
        raise SpecError(f"at most {MAX_DATASETS_PER_LAUNCH} non-empty ?data= values of up to 512 characters",
                        reason="bad_data")
    return repo, data


async def _events_response(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    await resp.prepare(request)
    return resp


async def one_event(request: web.Request, event: LaunchEvent, headers: dict[str, str]) -> web.StreamResponse:
    """A stream of a single terminal event, as BinderHub answers refusals (HTTP 200)."""
    resp = await _events_response(request, headers)
    await resp.write(event.sse())
    await resp.write_eof()
    return resp


async def stream_events(
    request: web.Request, events: AsyncIterator[LaunchEvent], headers: dict[str, str], keepalive: float
) -> web.StreamResponse:
    """Write events as they come, a keepalive comment whenever ``keepalive`` seconds pass without one.

    A client that leaves mid-wait closes the stream, which stops the relay before closing it.
    """
    resp = await _events_response(request, headers)
    async with aclosing(with_keepalives(events, keepalive)) as stream:
        async for event in stream:
            if event is None:
                await resp.write(KEEPALIVE)
                continue
            await resp.write(event.sse())
            if event.terminal:
                break
    await resp.write_eof()
    return resp


@routes.get("/build/{provider}/{spec:.+}")
async def build(request: web.Request) -> web.StreamResponse:
    """BinderHub's launch stream, relayed from the best member with failover."""
    if request.app[CONFIG].mode == "redirect":
        return redirect(request, "build")
    headers = cors_headers(request)
    if EVENT_STREAM not in request.headers.get("Accept", ""):
        failed = LaunchEvent(phase="failed", status_code=400, message="Missing Accept header: text/event-stream\n")
        return await one_event(request, failed, headers)
    try:
        repo, data = parse_target(request, "build")
    except SpecError as exc:
        status = 404 if exc.reason == "unknown_provider" else 400
        return await one_event(request, LaunchEvent(phase="failed", status_code=status, message=exc.message + "\n"), headers)
    dispatcher = request.app[DISPATCHER]
    ip = dispatcher.client_ip(request.headers, request.remote)
    admission = dispatcher.admit(repo.provider, repo.spec, ip)
    if admission.rate is not None:
        headers.update(admission.rate.headers())
    if admission.refusal is not None:
        refused = LaunchEvent(phase="failed", status_code=admission.status, message=admission.refusal)
        return await one_event(request, refused, headers)
    region = dispatcher.client_region(request.headers)
    decision = dispatcher.decide(repo, data, region=region, client_ip=ip)
    headers[DECISION_HEADER] = decision.decision_id
    if decision.chosen is None:
        msg = nothing_routable_message(decision) + "\n"
        return await one_event(request, LaunchEvent(phase="failed", status_code=503, message=msg), headers)
    target = LaunchTarget(repo=repo, data=tuple(data), client_ip=ip, origin=request.headers.get("Origin"))

    def redecide() -> tuple[RouteDecision, RegistrySnapshot]:
        return dispatcher.decide(repo, data, region=region, client_ip=ip), dispatcher.snapshot()

    events = request.app[RELAY].relay(decision, dispatcher.snapshot(), target, redecide)
    return await stream_events(request, events, headers, request.app[CONFIG].routing.keepalive)


@routes.options("/build/{provider}/{spec:.+}")
async def build_preflight(request: web.Request) -> web.Response:
    """CORS preflight for cross-origin EventSource/fetch clients."""
    headers = cors_headers(request)
    if headers:
        headers.update({
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "Accept"),
            "Access-Control-Max-Age": "600",
        })
    return web.Response(status=204, headers=headers)


def redirect(request: web.Request, prefix: str) -> web.Response:
    """307 to the chosen member's public URL + the same path and query, with a sticky cookie."""
    config = request.app[CONFIG]
    try:
        repo, data = parse_target(request, prefix)
    except SpecError as exc:
        return json_error(404 if exc.reason == "unknown_provider" else 400, exc.reason, exc.message)
    dispatcher = request.app[DISPATCHER]
    ip = dispatcher.client_ip(request.headers, request.remote)
    admission = dispatcher.admit(repo.provider, repo.spec, ip)
    rate_headers = admission.rate.headers() if admission.rate is not None else {}
    if admission.refusal is not None:
        reason = "rate_limited" if admission.status == 429 else "denied"
        return json_error(admission.status, reason, admission.refusal.strip(), rate_headers)
    decision = dispatcher.decide(repo, data, region=dispatcher.client_region(request.headers), client_ip=ip,
                                 count=False)
    headers = {DECISION_HEADER: decision.decision_id, **rate_headers}
    sticky = request.cookies.get(config.routing.cookie_name)
    keep = sticky is not None and decision.chosen is not None and dispatcher.routable(sticky, repo.provider, decision)
    member_id = sticky if keep else decision.chosen
    if member_id is not None:
        dispatcher.launched(member_id, repo)  # provisional load at the member the 307 names
    if member_id is None:
        headers["Retry-After"] = "30"
        return json_error(503, "no_member", nothing_routable_message(decision), headers)
    entry = dispatcher.snapshot().members.get(member_id)
    if entry is None:  # removed between the decision and now
        return json_error(503, "no_member", "the chosen member just left the federation; try again", {"Retry-After": "1"})
    headers["Location"] = entry.record.public_url.rstrip("/") + request.raw_path
    resp = web.Response(status=307, headers=headers)
    resp.set_cookie(config.routing.cookie_name, member_id, max_age=config.routing.cookie_max_age, path="/",
                    httponly=True, samesite="Lax", secure=config.public_url.startswith("https://"))
    return resp


async def v2_redirect(request: web.Request) -> web.Response:
    """``/v2/...`` in redirect mode (registered by web.routes only in that mode)."""
    return redirect(request, "v2")
