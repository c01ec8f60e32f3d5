"""The claims of request tokens and signed documents, as models (for the published schemas)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .wire import WireModel


class RequestTokenClaims(WireModel):
    """Claims of a request token (header: alg EdDSA, typ fed-req+jwt, kid = signer's thumbprint)."""

    iss: str = Field(description="The sender's id (broker id, or member id for member-signed requests).")
    aud: str = Field(description="The receiver's id (member id; the broker key thumbprint for enrollment).")
    iat: int = Field(description="Issued at, seconds since the epoch.")
    exp: int = Field(description="Expiry, at most 60 s after iat.")
    jti: str = Field(min_length=8, max_length=128, description="Unique id; a receiver accepts each once.")
    htm: str = Field(description="HTTP method the token is bound to.")
    htu: str = Field(description="Path and query the token is bound to.")
    bh: str = Field(description="base64url SHA-256 of the exact request body (empty body included).")


class DocumentClaims(WireModel):
    """Claims of a signed document (header typ fed-doc+jwt), e.g. a status ad."""

    iss: str = Field(description="The signer's id; for a status ad, the member id it describes.")
    iat: int
    exp: int = Field(description="Expiry; at most one hour after iat.")
    jti: str
    doc: dict[str, Any] = Field(description="The signed payload, e.g. a StatusAd.")
