"""The broker's error hierarchy and the one middleware that renders every error as JSON."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from fedproto.errors import ProtocolError, SpecError, TokenError
from fedproto.version import PROTOCOL, PROTOCOL_HEADER, peer_version

log = logging.getLogger(__name__)


class BrokerError(Exception):
    """An error with an HTTP status, a short reason and a human message."""

    status = 400
    reason = "bad_request"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(BrokerError):
    status, reason = 400, "bad_request"


class Unauthorized(BrokerError):
    status, reason = 401, "unauthorized"


class Forbidden(BrokerError):
    status, reason = 403, "forbidden"


class NotFound(BrokerError):
    status, reason = 404, "not_found"


class Conflict(BrokerError):
    status, reason = 409, "conflict"


class TooManyRequests(BrokerError):
    status, reason = 429, "rate_limited"


class Unavailable(BrokerError):
    """503: always carries Retry-After."""

    status, reason = 503, "unavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: int = 10) -> None:
        super().__init__(message, reason=reason, headers={"Retry-After": str(retry_after)})


def json_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


async def announce_protocol(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer says which protocol version the broker speaks (``on_response_prepare``)."""
    response.headers[PROTOCOL_HEADER] = str(PROTOCOL)


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every error leaves as ``{"error", "message"}``; nothing unexpected leaks a traceback.

    A caller that announces another major protocol version (members do) is refused first,
    with a message naming both versions, rather than misread.
    """
    try:
        peer_version(request.headers.get(PROTOCOL_HEADER), peer="the caller")
        return await handler(request)
    except BrokerError as exc:
        return json_error(exc.status, exc.reason, exc.message, exc.headers)
    except TokenError as exc:
        return json_error(401, exc.reason, exc.message)
    except SpecError as exc:
        status = 404 if exc.reason == "unknown_provider" else 400
        return json_error(status, exc.reason, exc.message)
    except ProtocolError as exc:
        return json_error(400, exc.reason, exc.message)
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
