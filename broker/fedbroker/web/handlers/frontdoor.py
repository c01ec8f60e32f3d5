"""The BinderHub-compatible front door: ``/build/{provider}/{spec}``.

Relay mode streams the chosen member's events (unnamed ``data:`` events, ``:keepalive``
comments, closed after ``ready``/``failed``); redirect mode is in :mod:`.redirect`. Refusals
are one ``failed`` event on a 200 stream, as BinderHub answers them. A client that goes away
is noticed within a second even while no event flows, so the relay can cancel the launch at
the member (see :mod:`fedbroker.launch.relay`). On this hot path handlers return responses
rather than raising HTTP exceptions. CORS headers come from :mod:`fedbroker.web.cors`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import AsyncIterator

from aiohttp import web

from fedproto.errors import SpecError
from fedproto.launch import MAX_DATASETS_PER_LAUNCH, LaunchEvent
from fedproto.repospec import RepoSpec
from fedproto.routing import RouteDecision
from fedproto.sse import KEEPALIVE, SSE_HEADERS, with_keepalives

from ...appkeys import CONFIG, DISPATCHER, RELAY
from ...launch.relay import LaunchTarget
from ...registry.snapshot import RegistrySnapshot
from ...routing.dispatcher import nothing_routable_message
from ..cors import preflight

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
DECISION_HEADER = "X-Federation-Decision"
# How often a quiet stream checks that its client is still there.
DISCONNECT_CHECK = 1.0


def raw_spec(request: web.Request, prefix: str) -> str:
    """The spec exactly as the client escaped it (match_info is unescaped, which breaks gl and git specs)."""
    path = request.raw_path.partition("?")[0]
    return path[len(prefix) + len(request.match_info["provider"]) + 3:]  # past "/{prefix}/{provider}/"


def parse_target(request: web.Request, prefix: str) -> tuple[RepoSpec, list[str]]:
    """Provider, spec and ``?data=`` values, validated (raises SpecError)."""
    repo = RepoSpec.parse(request.match_info["provider"], raw_spec(request, prefix),
                          allow_file=request.app[CONFIG].dev)
    # Most launches have no query: parsing one is skipped then.
    return repo, checked_data(request.query.getall("data", []) if request.query_string else [])


def checked_data(data: list[str]) -> list[str]:
    """The ``?data=`` values of a launch or a dry run, as given; raises SpecError (400) when bad."""
    if len(data) > MAX_DATASETS_PER_LAUNCH or any(not d.strip() or len(d) > 512 for d in data):
        raise SpecError(f"at most {MAX_DATASETS_PER_LAUNCH} non-empty ?data= values of up to 512 characters",
                        reason="bad_data")
    if not all(d.isprintable() for d in data):
        # A control character (NUL, newline, escape) names no dataset and must not reach logs or streams.
        raise SpecError("?data= values must be printable text (a dataset id such as 10.5281/zenodo.3242074)",
                        reason="bad_data")
    return data


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


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream_events(
    request: web.Request, events: AsyncIterator[LaunchEvent], headers: dict[str, str], keepalive: float
) -> web.StreamResponse:
    """Write events as they come, a keepalive comment whenever ``keepalive`` seconds pass without one.

    A client that leaves closes the stream, which stops the relay (and so cancels the launch at
    the member) before closing it. Leaving is an ordinary event: logged at INFO, no traceback.
    """
    resp = await _events_response(request, headers)
    try:
        await _pump(request, resp, events, keepalive)
        await resp.write_eof()
    except ConnectionResetError:
        log.info("%s: the client left before the stream ended", request.path)
    return resp


async def _pump(
    request: web.Request, resp: web.StreamResponse, events: AsyncIterator[LaunchEvent], keepalive: float
) -> None:
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    # Ticks more often than keepalives are due, to notice a client gone while nothing flows.
    async with aclosing(with_keepalives(events, min(keepalive, DISCONNECT_CHECK))) as stream:
        async for event in stream:
            if event is None:
                if client_gone(request):
                    raise ConnectionResetError("client disconnected")
                if loop.time() - last_write >= keepalive:
                    await resp.write(KEEPALIVE)
                    last_write = loop.time()
                continue
            await resp.write(event.sse())
            last_write = loop.time()
            if event.terminal:
                break


async def build(request: web.Request) -> web.StreamResponse:
    """BinderHub's launch stream, relayed from the best member with failover (relay mode; added by web.routes)."""
    headers: dict[str, str] = {}
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


async def build_preflight(request: web.Request) -> web.Response:
    """CORS preflight for cross-origin EventSource/fetch clients."""
    return preflight(request)
