"""The token attack list, as HTTP headers for one request to a running broker or member.

Each attack is a name, how to make the ``Authorization`` header for (method, path, body)
from the key the receiver trusts, and the reason the receiver must refuse it with. The
list mirrors tests/proto/test_proto_tokens.py's ATTACKS, applied over the wire, plus a replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

import jwt
from cryptography.hazmat.primitives import serialization

from fedproto.clock import SystemClock
from fedproto.keys import PrivateKey, b64url
from fedproto.tokens import MAX_TOKEN_BYTES, REQUEST_TYP, body_hash, sign_document, sign_request


@dataclass(frozen=True)
class Signer:
    """Who signs, for whom, with which key: the legitimate caller of a route."""

    key: PrivateKey
    issuer: str
    audience: str

    def token(self, method: str, path: str, body: bytes) -> str:
        return sign_request(self.key, issuer=self.issuer, audience=self.audience, method=method, path_qs=path,
                            body=body, clock=SystemClock())

    def claims(self, method: str, path: str, body: bytes, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + 30,
                  "jti": secrets.token_urlsafe(18), "htm": method, "htu": path, "bh": body_hash(body)}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def encode(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.key.key, algorithm="EdDSA",
                          headers={"kid": self.key.kid, "typ": REQUEST_TYP, **header})


Maker = Callable[[Signer, str, str, bytes], str]


def _forged(s: Signer, m: str, p: str, b: bytes) -> str:
    head, payload, sig = s.token(m, p, b).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["jti"] = secrets.token_urlsafe(18)
    return ".".join([head, b64url(json.dumps(claims).encode()), sig])


def _alg_none(s: Signer, m: str, p: str, b: bytes) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": REQUEST_TYP, "kid": s.key.kid}).encode())
    return f"{header}.{b64url(json.dumps(s.claims(m, p, b)).encode())}."


def _hs256(s: Signer, m: str, p: str, b: bytes) -> str:
    pem = s.key.key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": REQUEST_TYP, "kid": s.key.kid}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(s.claims(m, p, b)).encode())
    return signing_input + "." + b64url(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())


def _other(s: Signer, **changes: str) -> Signer:
    return Signer(changes.get("key", s.key), changes.get("issuer", s.issuer), changes.get("audience", s.audience))  # type: ignore[arg-type]


NOW = lambda: int(time.time())  # noqa: E731

ATTACKS: list[tuple[str, Maker, str]] = [
    ("forged-signature", _forged, "bad_signature"),
    ("unknown-key", lambda s, m, p, b: Signer(PrivateKey.generate(), s.issuer, s.audience).token(m, p, b), "unknown_key"),
    ("expired", lambda s, m, p, b: s.encode(s.claims(m, p, b, iat=NOW() - 100, exp=NOW() - 40)), "expired"),
    ("not-yet-valid", lambda s, m, p, b: s.encode(s.claims(m, p, b, iat=NOW() + 120, exp=NOW() + 150)), "not_yet_valid"),
    ("nbf-in-future", lambda s, m, p, b: s.encode(s.claims(m, p, b, nbf=NOW() + 120)), "not_yet_valid"),
    ("lifetime-over-60s", lambda s, m, p, b: s.encode(s.claims(m, p, b, exp=NOW() + 600)), "lifetime_too_long"),
    ("other-audience", lambda s, m, p, b: _other(s, audience="someone-else").token(m, p, b), "wrong_audience"),
    ("other-issuer", lambda s, m, p, b: _other(s, issuer="evil").token(m, p, b), "wrong_issuer"),
    ("alg-none", _alg_none, "bad_alg"),
    ("hs256-public-key-as-secret", _hs256, "bad_alg"),
    ("other-method", lambda s, m, p, b: s.token("PUT" if m != "PUT" else "GET", p, b), "wrong_method"),
    ("other-path", lambda s, m, p, b: s.token(m, p + "?x=2", b), "wrong_path"),
    ("other-body", lambda s, m, p, b: s.token(m, p, b + b" "), "wrong_body"),
    ("oversize", lambda s, m, p, b: s.encode(s.claims(m, p, b, pad="x" * MAX_TOKEN_BYTES)), "oversize_token"),
    ("missing-jti", lambda s, m, p, b: s.encode(s.claims(m, p, b, jti=None)), "missing_claim"),
    ("missing-iat", lambda s, m, p, b: s.encode(s.claims(m, p, b, iat=None)), "missing_claim"),
    ("document-as-request", lambda s, m, p, b: sign_document(s.key, issuer=s.issuer, payload={}, clock=SystemClock(),
                                                             ttl=30), "wrong_type"),
    ("garbage", lambda s, m, p, b: "not.a.jwt", "malformed_token"),
    ("empty", lambda s, m, p, b: "", "missing_token"),
]
ATTACK_IDS = [a[0] for a in ATTACKS]
