"""Request tokens and signed documents: EdDSA JWTs, their claims and their checks.

A request token binds one HTTP request: ``iss``, ``aud`` (the receiver's id),
``iat``, ``exp`` (at most 60 s after ``iat``), ``jti``, and ``htm`` (method),
``htu`` (path and query) and ``bh`` (base64url SHA-256 of the body). A signed
document (such as a status ad) carries its payload in ``doc`` and may live longer.
The two are told apart by the header ``typ`` so neither can stand in for the other.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import secrets
from functools import lru_cache
from typing import Any

import pydantic_core
from cryptography.exceptions import InvalidSignature

from .clock import Clock
from .errors import TokenError
from .keys import PrivateKey, PublicKeySet, b64url
from .replay import ReplayCache

REQUEST_TYP = "fed-req+jwt"
DOCUMENT_TYP = "fed-doc+jwt"
MAX_REQUEST_LIFETIME = 60.0
MAX_DOCUMENT_LIFETIME = 3600.0
MAX_TOKEN_BYTES = 8192
# Signed documents (status ads) travel in response bodies, not headers, and their schema allows
# up to 20,000 image hashes and 10,000 datasets: a member with a few hundred cached images
# already passes 8 KiB. Their limit is sized to the schema instead of to a header.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
DEFAULT_LEEWAY = 5.0


_EMPTY_BODY_HASH = b64url(hashlib.sha256(b"").digest())


def body_hash(body: bytes) -> str:
    return b64url(hashlib.sha256(body).digest()) if body else _EMPTY_BODY_HASH


@lru_cache(maxsize=64)
def _header_segment(kid: str, typ: str) -> str:
    """The encoded JWS header, the same for every token of one key and type (bounded: keys rotate)."""
    return b64url(json.dumps({"alg": "EdDSA", "kid": kid, "typ": typ}, separators=(",", ":")).encode())


def _encode(key: PrivateKey, claims: dict[str, Any], typ: str) -> str:
    """A compact JWS (RFC 7515) signed with Ed25519: what PyJWT made, at a third of the cost (the
    broker signs a request per member poll)."""
    header = _header_segment(key.kid, typ)
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{b64url(key.key.sign(signing_input.encode('ascii')))}"


def sign_request(
    key: PrivateKey,
    *,
    issuer: str,
    audience: str,
    method: str,
    path_qs: str,
    body: bytes,
    clock: Clock,
    ttl: float = 30.0,
) -> str:
    """A token for one request from ``issuer`` to ``audience``."""
    now = clock.now()
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": int(now),
        "exp": int(now + min(ttl, MAX_REQUEST_LIFETIME)),
        "jti": secrets.token_urlsafe(18),
        "htm": method.upper(),
        "htu": path_qs,
        "bh": body_hash(body),
    }
    return _encode(key, claims, REQUEST_TYP)


def sign_document(
    key: PrivateKey, *, issuer: str, payload: dict[str, Any], clock: Clock, ttl: float
) -> str:
    """A signed document: ``payload`` under ``doc``, valid for ``ttl`` seconds."""
    now = clock.now()
    claims = {
        "iss": issuer,
        "iat": int(now),
        "exp": int(now + min(ttl, MAX_DOCUMENT_LIFETIME)),
        "jti": secrets.token_urlsafe(12),
        "doc": payload,
    }
    return _encode(key, claims, DOCUMENT_TYP)


# The base64url alphabet, mapped onto standard base64's so the C decoder can check every byte
# (``strict_mode``); a token holding ``+``, ``/`` or ``=`` is refused before the mapping.
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64url_segment(segment: bytes) -> bytes:
    if b"+" in segment or b"/" in segment or b"=" in segment:
        raise binascii.Error("not base64url")
    return binascii.a2b_base64(segment.translate(_FROM_URLSAFE) + b"=" * (-len(segment) % 4), strict_mode=True)


def _json_object(segment: bytes) -> dict[str, Any]:
    try:
        # pydantic's JSON parser (jiter) rather than json.loads: a status ad's payload is ~10 KB of
        # JSON, parsed on every poll, and jiter parses it in 60 % of the time. Strict UTF-8, as
        # RFC 7519 requires (json.loads would also guess UTF-16 and UTF-32).
        value = pydantic_core.from_json(_b64url_segment(segment), cache_strings=False)
    except (ValueError, binascii.Error) as exc:  # UnicodeDecodeError and JSON errors are ValueErrors
        raise TokenError("token is not a well-formed JWT", reason="malformed_token") from exc
    if not isinstance(value, dict):
        raise TokenError("token is not a well-formed JWT", reason="malformed_token")
    return value


def _segments(token: str) -> tuple[bytes, bytes, bytes]:
    """The three segments of a compact JWS, as bytes (the token is ASCII: base64url and dots)."""
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError:
        raise TokenError("token is not a well-formed JWT", reason="malformed_token") from None
    parts = data.split(b".")
    if len(parts) != 3 or not parts[0] or not parts[1]:  # an empty signature is refused by its check
        raise TokenError("token is not a well-formed JWT", reason="malformed_token")
    return parts[0], parts[1], parts[2]


def signer_kid(token: str) -> str | None:
    """The ``kid`` a token names; only meaningful once its signature has been verified."""
    kid = _json_object(_segments(token)[0]).get("kid")
    return kid if isinstance(kid, str) else None


def _decode_verified(token: str, keys: PublicKeySet, typ: str, max_bytes: int = MAX_TOKEN_BYTES) -> dict[str, Any]:
    """Check size, header and signature; return the claims unchecked otherwise.

    A compact JWS verified with Ed25519 directly rather than through PyJWT: PyJWT checks every
    character of the token against the base64url alphabet in Python, and a status ad is tens of
    KB, which made it 85 % of the broker's cost of a poll. Every check it made is made here: three
    non-empty segments, strict base64url, JSON objects, ``alg`` EdDSA, no ``crit`` extension (we
    understand none, RFC 7515 4.1.11), the signature over ``header.payload`` as sent.
    """
    if not isinstance(token, str) or not token:
        raise TokenError("missing token", reason="missing_token")
    if len(token) > max_bytes:
        raise TokenError(f"token is larger than {max_bytes} bytes", reason="oversize_token")
    header_b64, payload_b64, signature_b64 = _segments(token)
    header = _json_object(header_b64)
    if header.get("alg") != "EdDSA":
        raise TokenError(f"algorithm {header.get('alg')!r} is not allowed; only EdDSA", reason="bad_alg")
    if header.get("typ") != typ:
        raise TokenError(f"token type {header.get('typ')!r} is not {typ!r}", reason="wrong_type")
    if "crit" in header:
        raise TokenError("token names critical header extensions this party does not understand",
                         reason="malformed_token")
    kid = header.get("kid")
    public = keys.get(kid) if isinstance(kid, str) else None
    if public is None:
        raise TokenError("token is signed by an unknown key", reason="unknown_key")
    try:
        signature = _b64url_segment(signature_b64)
    except binascii.Error as exc:
        raise TokenError("token is not a well-formed JWT", reason="malformed_token") from exc
    try:
        public.key.verify(signature, b"%s.%s" % (header_b64, payload_b64))
    except InvalidSignature as exc:
        raise TokenError("token signature does not verify", reason="bad_signature") from exc
    return _json_object(payload_b64)


def _check_times(claims: dict[str, Any], now: float, leeway: float, max_lifetime: float) -> None:
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
        raise TokenError("token needs numeric iat and exp", reason="missing_claim")
    if iat > now + leeway:
        raise TokenError("token is not valid yet (iat in the future)", reason="not_yet_valid")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and nbf > now + leeway:
        raise TokenError("token is not valid yet (nbf)", reason="not_yet_valid")
    if exp < now - leeway:
        raise TokenError("token has expired", reason="expired")
    if exp - iat > max_lifetime:
        raise TokenError(f"token lifetime exceeds {max_lifetime:.0f} s", reason="lifetime_too_long")


def _check_issuer(claims: dict[str, Any], issuer: str | None) -> None:
    if not isinstance(claims.get("iss"), str):
        raise TokenError("token has no issuer", reason="missing_claim")
    if issuer is not None and claims["iss"] != issuer:
        raise TokenError("token issuer is not the expected party", reason="wrong_issuer")


def verify_request(
    token: str,
    *,
    keys: PublicKeySet,
    issuer: str | None,
    audience: str,
    method: str,
    path_qs: str,
    body: bytes,
    clock: Clock,
    replay: ReplayCache | None,
    leeway: float = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Check every claim of a request token; return its claims or raise :class:`TokenError`."""
    claims = _decode_verified(token, keys, REQUEST_TYP)
    _check_issuer(claims, issuer)
    if claims.get("aud") != audience:
        raise TokenError("token is for another audience", reason="wrong_audience")
    now = clock.now()
    _check_times(claims, now, leeway, MAX_REQUEST_LIFETIME)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
        raise TokenError("token needs a jti of 8 to 128 characters", reason="missing_claim")
    if claims.get("htm") != method.upper():
        raise TokenError("token is bound to another HTTP method", reason="wrong_method")
    if claims.get("htu") != path_qs:
        raise TokenError("token is bound to another path or query", reason="wrong_path")
    if claims.get("bh") != body_hash(body):
        raise TokenError("token is bound to another body", reason="wrong_body")
    if replay is not None:
        replay.check_and_add(jti, float(claims["exp"]), now)
    return claims


def verify_document(
    token: str,
    *,
    keys: PublicKeySet,
    issuer: str | None,
    clock: Clock,
    leeway: float = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Check a signed document; return its ``doc`` payload with ``iss``/``iat``/``exp`` beside it."""
    claims = _decode_verified(token, keys, DOCUMENT_TYP, MAX_DOCUMENT_BYTES)
    _check_issuer(claims, issuer)
    _check_times(claims, clock.now(), leeway, MAX_DOCUMENT_LIFETIME)
    doc = claims.get("doc")
    if not isinstance(doc, dict):
        raise TokenError("signed document has no doc object", reason="missing_claim")
    return {"doc": doc, "iss": claims["iss"], "iat": claims["iat"], "exp": claims["exp"]}


def bearer(header_value: str | None) -> str:
    """The token from an ``Authorization: Bearer ...`` header value."""
    if not header_value:
        raise TokenError("missing Authorization header", reason="missing_token")
    scheme, _, value = header_value.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenError("Authorization must be 'Bearer <token>'", reason="missing_token")
    return value.strip()
