"""The error base both sides share: every deliberate error has a short stable reason and a human message.

Errors say *what* went wrong (not found, conflict, a bad token), never how HTTP spells it, so
services and the registry raise them without knowing about HTTP. Each side's one error
middleware turns them into ``{"error": <reason>, "message": <message>}`` with the status
:func:`http_status` gives, the one table of that mapping.
"""

from __future__ import annotations


class FederationError(Exception):
    """Base of every error raised on purpose by fedproto, the broker and the agent."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


# -- what went wrong, for services and the registry --------------------------------------

class InvalidRequest(FederationError):
    """The request or its body is malformed or not allowed as it stands."""

    reason = "bad_request"


class Unauthenticated(FederationError):
    """No credential, or one that does not prove who the caller is."""

    reason = "unauthorized"


class Forbidden(FederationError):
    """The caller is known but may not do this."""

    reason = "forbidden"


class NotFound(FederationError):
    reason = "not_found"


class Conflict(FederationError):
    """The request contradicts the current state (an existing id, a state that does not allow it)."""

    reason = "conflict"


class TooLarge(FederationError):
    reason = "body_too_large"


class RateLimited(FederationError):
    """Too many requests from this caller; try again after ``retry_after`` seconds."""

    reason = "rate_limited"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: int = 10) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class Unavailable(FederationError):
    """This side cannot serve the request now; try again after ``retry_after`` seconds."""

    reason = "unavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: int = 10) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


# -- the protocol's own rejections -------------------------------------------------------

class ProtocolError(FederationError):
    """Base of every error raised by fedproto's checks; ``reason`` is a short stable code."""

    reason = "protocol_error"


class KeyMaterialError(ProtocolError):
    """A key or key set that cannot be used (wrong type, malformed, missing)."""

    reason = "bad_key"


class TokenError(ProtocolError):
    """A request token or signed document that must be rejected."""

    reason = "bad_token"


class SpecError(ProtocolError):
    """A provider or repository spec that does not parse."""

    reason = "bad_spec"


# Most specific first: the first class an error is an instance of gives its status.
_HTTP_STATUS: tuple[tuple[type[FederationError], int], ...] = (
    (TokenError, 401),
    (ProtocolError, 400),
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (RateLimited, 429),
    (Unavailable, 503),
)


def http_status(error: FederationError) -> int:
    """The HTTP status an error is answered with (500 for a kind the table does not know)."""
    if isinstance(error, SpecError) and error.reason == "unknown_provider":
        return 404  # as BinderHub answers /build/<unknown>/...
    return next((status for kind, status in _HTTP_STATUS if isinstance(error, kind)), 500)


def retry_after(error: FederationError) -> int | None:
    """Seconds the caller should wait, for errors that say (a ``Retry-After`` header)."""
    return error.retry_after if isinstance(error, (RateLimited, Unavailable)) else None
