"""The agent's errors (fedproto's error base) and the middleware that renders every error as JSON.

Errors are ``{"error": "<short reason>", "message": "<human text>"}`` with the
right status. Anything unexpected is logged with its traceback and answered as
a bare 500, so no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from fedproto.errors import (
    Conflict as Conflict,
    FederationError,
    InvalidRequest,
    NotFound as NotFound,
    TooLarge,
    Unauthenticated,
    http_status,
)
from fedproto.version import PROTOCOL, PROTOCOL_HEADER, peer_version

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The kinds of error are fedproto's, shared with the broker (fedproto.errors); these are the
# names the agent's modules raise them by. The middleware below answers them as HTTP.
AgentError = FederationError
BadRequest = InvalidRequest
Unauthorized = Unauthenticated
PayloadTooLarge = TooLarge


def error_response(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one JSON error shape of the agent."""
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


async def announce_protocol(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer says which protocol version the agent speaks (``on_response_prepare``)."""
    response.headers[PROTOCOL_HEADER] = str(PROTOCOL)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render :class:`AgentError`, aiohttp's HTTP errors and surprises as JSON errors.

    A broker that announces another major protocol version is refused first, with a
    message naming both versions, rather than misread.
    """
    try:
        peer_version(request.headers.get(PROTOCOL_HEADER), peer="the broker")
        return await handler(request)
    except FederationError as exc:
        return error_response(http_status(exc), exc.reason, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = (exc.reason or "error").lower().replace(" ", "_")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error_response(exc.status, reason, message or reason)
    except ConnectionResetError:
        raise  # the client went away; nothing to answer
    except Exception:  # noqa: BLE001 - the whole point: nothing unexpected leaks
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the agent hit an unexpected error; see its log")
