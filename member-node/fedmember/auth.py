"""Request authentication: only the broker, with a fresh signed token, may call the agent.

Every route except the public ones (``/health``, ``/.well-known/jwks.json``,
``/metrics``, and ``/build/...``, which checks its own launch ticket) must carry ``Authorization: Bearer <request token>`` signed by a
pinned broker key, for this member (``aud``), bound to the method, path+query
and body, and not seen before. The body size is checked first (413), so an
oversize body is never read or hashed.
"""

from __future__ import annotations

from aiohttp import web

from fedproto.errors import TokenError
from fedproto.tokens import bearer, verify_request

from . import appkeys
from .brokertrust import ANNOUNCE_HEADER
from .errors import Handler, error_response

PUBLIC_PATHS = frozenset({"/health", "/.well-known/jwks.json", "/metrics"})
# Browsers' ticketed launches: the launch ticket in the query is their credential (see publiclaunch).
# Fronted notebook servers (serverproxy): jupyter-server checks its own token.
PUBLIC_PREFIXES = ("/build/", "/servers/")


def _reject(request: web.Request, status: int, reason: str, message: str) -> web.Response:
    request.app[appkeys.METRICS].auth_failure(reason)
    headers = {"WWW-Authenticate": 'Bearer realm="fedmember"'} if status == 401 else None
    return error_response(status, reason, message, headers)


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        return None
    return body


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the broker's request token on every non-public route."""
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    app = request.app
    limit = app[appkeys.CONFIG].member.max_body_bytes
    body = await _read_limited(request, limit)
    if body is None:
        return _reject(request, 413, "body_too_large", f"request body is larger than {limit} bytes")
    trust = app[appkeys.BROKER_KEYS]
    broker_keys = trust.keys
    if broker_keys is None:
        return _reject(request, 401, "not_enrolled", "this member has not enrolled with a broker yet")
    config = app[appkeys.CONFIG]
    try:
        claims = verify_request(
            bearer(request.headers.get("Authorization")),
            keys=broker_keys,
            issuer=config.broker.id or None,
            audience=config.member.id,
            method=request.method,
            path_qs=request.raw_path,
            body=body,
            clock=app[appkeys.CLOCK],
            replay=app[appkeys.REPLAY],
        )
    except TokenError as exc:
        return _reject(request, 401, exc.reason, exc.message)
    trust.announce(request.headers.get(ANNOUNCE_HEADER))
    request[appkeys.REQUEST_CLAIMS] = claims
    request[appkeys.REQUEST_BODY] = body
    return await handler(request)


def verified_body(request: web.Request) -> bytes:
    """The body the token was checked against (already read by the middleware)."""
    return request.get(appkeys.REQUEST_BODY, b"")
