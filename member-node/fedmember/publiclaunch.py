"""The agent's public ``/build``: where a broker in redirect mode sends a browser, with a launch ticket.

``GET /build/{provider}/{spec}?ticket=<JWT>[&data=...]`` answers BinderHub's event stream
(unnamed ``data:`` events, ``:keepalive`` comments, closed after ``ready``/``failed``), so
``@jupyterhub/binderhub-client``, thebe and the broker's own launch page read it unchanged.
The ticket is checked offline against the broker keys pinned at enrollment
(:mod:`fedproto.tickets`): for this member, for this provider/spec/ref/data, unexpired, and
not seen before. A refused ticket is a ``failed`` event (403) naming the reason, as BinderHub
reports refusals. Every answer allows any origin: the broker already applied its CORS policy
to the 307 that brought the browser here (the browser checks both hops), a cross-origin
redirect leaves the browser's ``Origin`` as ``null``, and the ticket, not a cookie, is what
authorises the launch. The page's real origin travels in the ticket, for the launched server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urljoin

from aiohttp import web

from fedproto.errors import TokenError
from fedproto.failures import Failure
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.tickets import verify_ticket

from . import appkeys
from .backends.base import failed
from .launches import ActiveLaunch

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CORS = {"Access-Control-Allow-Origin": "*"}
DISCONNECT_CHECK = 1.0  # seconds between checks that the browser is still there
STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no", **CORS}


def raw_spec(request: web.Request) -> str:
    """The spec as the browser escaped it (the ticket binds it so; match_info is unescaped)."""
    path = request.raw_path.split("?", 1)[0]
    return path[len(f"/build/{request.match_info['provider']}/"):]


def _launch_request(request: web.Request) -> LaunchRequest:
    """The launch the ticket allows; raises :class:`TokenError` for a ticket that does not allow this one."""
    app = request.app
    config = app[appkeys.CONFIG]
    broker_keys = app[appkeys.BROKER_KEYS].keys
    if broker_keys is None:
        raise TokenError("this member has not enrolled with a broker yet", reason="not_enrolled")
    claims = verify_ticket(
        request.query.get("ticket", ""),
        keys=broker_keys,
        issuer=config.broker.id or None,
        audience=config.member.id,
        provider=request.match_info["provider"],
        spec=raw_spec(request),
        data=request.query.getall("data", []),
        clock=app[appkeys.CLOCK],
        replay=app[appkeys.REPLAY],
    )
    return LaunchRequest(
        provider=claims["provider"], spec=claims["spec"], data=claims["data"], launch_id=claims["launch_id"],
        decision_id=claims.get("decision"), client_ip=claims.get("client_ip"), origin=claims.get("origin"),
    )


def finish_ready(event: LaunchEvent, request: web.Request) -> LaunchEvent:
    """``ready`` as a Binder client needs it: ``url`` absolute with a trailing slash, the member and
    ``binder_launch_host`` naming the broker the user launched from (as the broker's relay does)."""
    config = request.app[appkeys.CONFIG]
    update: dict[str, object] = {"member": config.member.id}
    if event.url:
        url = urljoin((config.member.public_url or config.member.agent_url).rstrip("/") + "/", event.url)
        update["url"] = url if url.endswith("/") else url + "/"
    if config.broker.url:
        update["binder_launch_host"] = config.broker.url.rstrip("/") + "/"
    return event.model_copy(update=update)


async def _answer(request: web.Request, event: LaunchEvent) -> web.StreamResponse:
    response = web.StreamResponse(headers=STREAM_HEADERS)
    await response.prepare(request)
    await response.write(event.sse())
    await response.write_eof()
    return response


@routes.get("/build/{provider}/{spec:.+}")
async def public_build(request: web.Request) -> web.StreamResponse:
    """A ticketed launch, streamed to the browser itself."""
    if not request.app[appkeys.CONFIG].member.public_launch:
        return await _answer(request, failed("this member does not take launches from browsers", 404))
    try:
        launch_request = _launch_request(request)
    except TokenError as exc:
        request.app[appkeys.METRICS].auth_failure(exc.reason)
        message = f"launch ticket refused ({exc.reason}): {exc.message}. Start the launch again from the Binder link."
        return await _answer(request, failed(message, 403))
    service = request.app[appkeys.LAUNCHES]
    repo = service.preflight(launch_request)
    if isinstance(repo, LaunchEvent):
        request.app[appkeys.METRICS].launch_outcome("failed")
        return await _answer(request, repo.model_copy(update={"launch_id": launch_request.launch_id}))
    launch = service.open(launch_request, repo)
    response = web.StreamResponse(headers=STREAM_HEADERS)
    watcher = asyncio.create_task(_abort_when_gone(request, launch))
    try:
        await response.prepare(request)
        async with contextlib.aclosing(launch.frames()) as frames:
            async for frame in frames:
                if launch.ended_with is not None and launch.ended_with.phase == "ready":
                    frame = finish_ready(launch.ended_with, request).sse()
                await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:
        # The browser went away; frames() has stopped the launch. Not an error of ours.
        log.info("launch %s: the browser closed the stream", launch_request.launch_id)
    finally:
        watcher.cancel()
    return response


async def _abort_when_gone(request: web.Request, launch: ActiveLaunch) -> None:
    """Stop the launch within a second of the browser leaving, rather than at the next keepalive:
    no broker stands between the browser and this agent to send the DELETE."""
    while not launch.finished.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            log.info("launch %s: the browser left before ready; stopping it", launch.launch_id)
            launch.abort("the browser left before the launch was ready", int(Failure.CANCELLED))
            return
        await asyncio.sleep(DISCONNECT_CHECK)


@routes.options("/build/{provider}/{spec:.+}")
async def public_build_preflight(request: web.Request) -> web.Response:
    """CORS preflight, for clients that send extra headers (e.g. X-Xsrftoken)."""
    return web.Response(status=204, headers={
        **CORS,
        "Access-Control-Allow-Methods": "GET, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "Accept")[:512],
        "Access-Control-Max-Age": "600",
    })
