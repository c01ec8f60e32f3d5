"""The agent's error hierarchy and the middleware that renders every error as JSON.

Errors are ``{"error": "<short reason>", "message": "<human text>"}`` with the
right status. Anything unexpected is logged with its traceback and answered as
a bare 500, so no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from fedproto.version import PROTOCOL, PROTOCOL_HEADER, ProtocolVersionError, peer_version

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AgentError(Exception):
    """An error the agent answers with a JSON body; subclasses fix status and reason."""

    status = 500
    reason = "internal_error"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class BadRequest(AgentError):
    status = 400
    reason = "bad_request"


class Unauthorized(AgentError):
    status = 401
    reason = "unauthorized"


class NotFound(AgentError):
    status = 404
    reason = "not_found"


class Conflict(AgentError):
    status = 409
    reason = "conflict"


class PayloadTooLarge(AgentError):
    status = 413
    reason = "body_too_large"


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
    except ProtocolVersionError as exc:
        return error_response(400, exc.reason, exc.message)
    except AgentError as exc:
        return error_response(exc.status, exc.reason, exc.message)
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
