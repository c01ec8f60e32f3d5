"""The broker's error hierarchy and the one middleware that renders every error as JSON."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from fedproto.errors import (
    Conflict as Conflict,
    FederationError,
    Forbidden as Forbidden,
    InvalidRequest,
    NotFound as NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable as Unavailable,
    http_status,
    retry_after,
)
from fedproto.version import PROTOCOL, PROTOCOL_HEADER, peer_version

log = logging.getLogger(__name__)


# The kinds of error are fedproto's, shared with the agent (fedproto.errors); these are the
# names broker modules raise them by. The registry and services raise them without knowing
# HTTP; this module's middleware is the one place that answers them as HTTP.
BrokerError = FederationError
BadRequest = InvalidRequest


class Unauthorized(Unauthenticated):
    """401 at the web edge, with its ``WWW-Authenticate`` challenge in ``headers``."""

    def __init__(self, message: str, *, reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason)
        self.headers = headers or {}


class TooManyRequests(RateLimited):
    """429 at the web edge, with the rate-limit headers the client is told (``X-RateLimit-*``)."""

    def __init__(self, message: str, *, reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason)
        self.headers = headers or {}


def json_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


_ANNOUNCED = str(PROTOCOL)  # formatted once, not per answer


async def announce_protocol(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer says which protocol version the broker speaks (``on_response_prepare``)."""
    response.headers[PROTOCOL_HEADER] = _ANNOUNCED


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every error leaves as ``{"error", "message"}``; nothing unexpected leaks a traceback.

    A caller that announces another major protocol version (members do) is refused first,
    with a message naming both versions, rather than misread.
    """
    try:
        peer_version(request.headers.get(PROTOCOL_HEADER), peer="the caller")
        return await handler(request)
    except FederationError as exc:
        headers = dict(getattr(exc, "headers", {}))
        wait = retry_after(exc)
        if wait is not None:
            headers.setdefault("Retry-After", str(wait))
        return json_error(http_status(exc), exc.reason, exc.message, headers or None)
    except ValidationError as exc:
        return json_error(400, "invalid_body", _validation_message(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        # aiohttp keeps the limit on the request, not on the exception.
        return json_error(413, "body_too_large", f"request body is larger than {request.client_max_size} bytes")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal_error", "the broker hit an unexpected error; it has been logged")
