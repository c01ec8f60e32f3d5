"""Per-client limits at the web edge: open launch streams and enrollment attempts per client address.

The client address is the one the dispatcher derives (the forwarding header's hop the trusted
proxies vouch for, else the peer), so a client cannot dodge a limit by writing its own
``X-Forwarded-For``. The counters live in this app's ``ClientLimits`` (routing/ratelimit.py).

The stream limit wraps the one handler that holds a stream open, relay mode's ``/build``
(:func:`stream_limited`, applied in ``web.routes``), rather than every request: redirect mode's
``/build`` answers at once and holds nothing, and the front door's other routes are not streams.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable

from aiohttp import web

from fedproto.launch import LaunchEvent

from ..appkeys import CLIENT_LIMITS, CLOCK, DISPATCHER
from ..errors import TooManyRequests

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_of(request: web.Request) -> str:
    return request.app[DISPATCHER].client_ip(request.headers, request.remote)


def check_enrollment_rate(request: web.Request) -> None:
    """429 when this client has used up its enrollment attempts (before anything is parsed)."""
    decision = request.app[CLIENT_LIMITS].enrollments.check(client_of(request))
    if decision is not None and not decision.allowed:
        now = request.app[CLOCK].now()
        retry = str(max(1, decision.reset - int(now)))
        raise TooManyRequests(decision.message(now).strip(), reason="rate_limited",
                              headers={**decision.headers(), "Retry-After": retry})


def stream_limited(handler: Handler) -> Handler:
    """``handler`` holding one of the client's ``rate_limit.streams_per_client`` open launch streams
    while it runs; past the limit, a 429 instead."""

    @functools.wraps(handler)
    async def limited(request: web.Request) -> web.StreamResponse:
        slots = request.app[CLIENT_LIMITS].streams
        client = client_of(request)
        if not slots.take(client):
            # As the front door refuses launches: one failed event in a 200 event stream (BinderHub's way).
            event = LaunchEvent(phase="failed", status_code=429,
                                message="Too many launches open from your address at once; wait for one to finish.\n")
            return web.Response(body=event.sse(), content_type="text/event-stream",
                                headers={"Cache-Control": "no-cache"})
        try:
            return await handler(request)
        finally:
            slots.give_back(client)

    return limited
