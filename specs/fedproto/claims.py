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


class LaunchTicketClaims(WireModel):
    """Claims of a launch ticket (header typ fed-ticket+jwt): a broker's leave for one redirected launch."""

    iss: str = Field(description="The broker's id.")
    aud: str = Field(description="The member id the ticket is for; every other member refuses it.")
    iat: int = Field(description="Issued at, seconds since the epoch.")
    exp: int = Field(description="Expiry, at most 60 s after iat.")
    jti: str = Field(min_length=8, max_length=128, description="Unique id; the agent accepts each once.")
    provider: str = Field(max_length=32, description="Provider the launch is for (bound).")
    spec: str = Field(max_length=1024, description="Spec with its ref, exactly as in the URL path (bound).")
    data: list[str] = Field(default_factory=list, max_length=16, description="The ?data= values, in order (bound).")
    launch_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="The launch id the member uses.")
    decision: str | None = Field(default=None, max_length=64, description="The broker's routing decision id.")
    client_ip: str | None = Field(default=None, max_length=64, description="The browser's address as the broker saw it.")
    origin: str | None = Field(default=None, max_length=512, description="The page origin the launched server must accept.")
