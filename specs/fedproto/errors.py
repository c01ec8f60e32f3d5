"""The protocol's error hierarchy: every rejection carries a short machine reason."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by fedproto; ``reason`` is a short stable code."""

    reason = "protocol_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class KeyMaterialError(ProtocolError):
    """A key or key set that cannot be used (wrong type, malformed, missing)."""

    reason = "bad_key"


class TokenError(ProtocolError):
    """A request token or signed document that must be rejected."""

    reason = "bad_token"


class SpecError(ProtocolError):
    """A provider or repository spec that does not parse."""

    reason = "bad_spec"
