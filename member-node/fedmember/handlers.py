"""The agent's HTTP routes: each parses, calls one service, renders."""

from __future__ import annotations

import contextlib
import json
import logging

from aiohttp import web
from pydantic import ValidationError

from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.sse import SSE_HEADERS

from . import appkeys
from .auth import verified_body
from .errors import BadRequest, NotFound

log = logging.getLogger(__name__)
routes = web.RouteTableDef()



@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    service = request.app[appkeys.HEALTH]
    checks = await service.checks()
    body = service.render(checks)
    return web.json_response(body, status=200 if body["ok"] else 503)


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[appkeys.MEMBER_KEYS].current().public_set().to_jwks())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app_metrics = request.app[appkeys.METRICS]
    capacity = await request.app[appkeys.BACKEND].capacity()
    app_metrics.servers_running.set(capacity.used)
    app_metrics.servers_building.set(capacity.building)
    app_metrics.servers_total.set(capacity.total)
    return web.Response(body=app_metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    return web.json_response({"signed": await request.app[appkeys.STATUS].signed()})


def _launch_request(request: web.Request) -> LaunchRequest:
    try:
        return LaunchRequest.received(json.loads(verified_body(request) or b"null"))
    except (ValueError, ValidationError) as exc:
        raise BadRequest(f"body is not a launch request: {str(exc).splitlines()[0]}", reason="bad_launch_request")


async def _stream(request: web.Request, *, build: bool) -> web.StreamResponse:
    launch_request = _launch_request(request)
    service = request.app[appkeys.LAUNCHES]
    response = web.StreamResponse(headers=SSE_HEADERS)
    repo = service.preflight(launch_request)
    if isinstance(repo, LaunchEvent):
        # BinderHub answers a bad spec with a failed event on a 200 stream; so do we.
        await response.prepare(request)
        await response.write(repo.model_copy(update={"launch_id": launch_request.launch_id}).sse())
        request.app[appkeys.METRICS].launch_outcome("failed")
        await response.write_eof()
        return response
    launch = service.open(launch_request, repo, build=build)
    try:
        await response.prepare(request)
        async with contextlib.aclosing(launch.frames()) as frames:
            async for frame in frames:
                await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:
        # The broker dropped the stream (its client left, or it gave up on us); frames() has
        # stopped the launch. An ordinary event, so no traceback.
        log.info("launch %s: the broker closed the stream", launch_request.launch_id)
    return response


@routes.post("/api/v1/launches")
async def create_launch(request: web.Request) -> web.StreamResponse:
    return await _stream(request, build=False)


@routes.post("/api/v1/builds")
async def create_build(request: web.Request) -> web.StreamResponse:
    return await _stream(request, build=True)


@routes.delete("/api/v1/launches/{launch_id}")
async def delete_launch(request: web.Request) -> web.Response:
    launch_id = request.match_info["launch_id"]
    if not await request.app[appkeys.LAUNCHES].delete(launch_id):
        raise NotFound(f"no launch or server {launch_id!r} here", reason="unknown_launch")
    return web.Response(status=204)
