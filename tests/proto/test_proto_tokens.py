"""Request tokens: every attack in the issue's list is refused with its reason."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fedproto.clock import FakeClock
from fedproto.errors import TokenError
from fedproto.keys import KeyRing, PrivateKey, b64url
from fedproto.replay import ReplayCache
from fedproto.tokens import (
    MAX_TOKEN_BYTES,
    REQUEST_TYP,
    bearer,
    body_hash,
    sign_document,
    sign_request,
    verify_document,
    verify_request,
)

BROKER, MEMBER = "broker", "site-a"
PATH, BODY = "/api/v1/launches?x=1", b'{"provider":"gh"}'


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([PrivateKey.generate()])


def _sign(ring: KeyRing, clock: FakeClock, **overrides: Any) -> str:
    args = dict(issuer=BROKER, audience=MEMBER, method="POST", path_qs=PATH, body=BODY, clock=clock)
    args.update(overrides)
    return sign_request(ring.signing_key, **args)


def _verify(token: str, ring: KeyRing, clock: FakeClock, replay: ReplayCache | None = None, **overrides: Any) -> dict:
    args = dict(
        keys=ring.public_set(), issuer=BROKER, audience=MEMBER, method="POST", path_qs=PATH, body=BODY,
        clock=clock, replay=replay if replay is not None else ReplayCache(),
    )
    args.update(overrides)
    return verify_request(token, **args)


def _raw_claims(ring: KeyRing, clock: FakeClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now())
    claims = {"iss": BROKER, "aud": MEMBER, "iat": now, "exp": now + 30, "jti": "abcdefgh12345678",
              "htm": "POST", "htu": PATH, "bh": body_hash(BODY)}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _encode(ring: KeyRing, claims: dict, **headers: Any) -> str:
    hdr = {"kid": ring.signing_key.kid, "typ": REQUEST_TYP, **headers}
    return jwt.encode(claims, ring.signing_key.key, algorithm="EdDSA", headers=hdr)


def _forged_signature(ring: KeyRing, clock: FakeClock) -> str:
    head, payload, sig = _sign(ring, clock).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["htu"] = "/api/v1/launches?x=2"
    payload = b64url(json.dumps(claims).encode())
    return ".".join([head, payload, sig])


def _unknown_key(ring: KeyRing, clock: FakeClock) -> str:
    return _sign(KeyRing([PrivateKey.generate()]), clock)


def _alg_none(ring: KeyRing, clock: FakeClock) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": REQUEST_TYP, "kid": ring.signing_key.kid}).encode())
    payload = b64url(json.dumps(_raw_claims(ring, clock)).encode())
    return f"{header}.{payload}."


def _hs256_with_public_key(ring: KeyRing, clock: FakeClock) -> str:
    # The classic confusion attack: HMAC keyed with the verifier's public key bytes.
    public_pem = ring.signing_key.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": REQUEST_TYP, "kid": ring.signing_key.kid}
    import hashlib
    import hmac

    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(_raw_claims(ring, clock)).encode())
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def _resegment(token: str, index: int, change: Callable[[str], str]) -> str:
    parts = token.split(".")
    parts[index] = change(parts[index])
    return ".".join(parts)


def _signed_segments(ring: KeyRing, clock: FakeClock, payload: str) -> str:
    """A token whose signature verifies over ``payload`` exactly as given, well-formed or not."""
    header = _sign(ring, clock).split(".")[0]
    signature = ring.signing_key.key.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{b64url(signature)}"


def _standard_base64_signature(ring: KeyRing, clock: FakeClock) -> str:
    # The same signature bytes in standard base64 ('+', '/', '='): the signed input is unchanged,
    # so only a strict base64url decoder refuses it.
    token = _sign(ring, clock)
    while not any(ch in token.split(".")[2] for ch in "-_"):
        clock.advance(1)
        token = _sign(ring, clock)
    return _resegment(token, 2, lambda seg: seg.replace("-", "+").replace("_", "/") + "==")


ATTACKS: list[tuple[str, Callable[[KeyRing, FakeClock], str], dict[str, Any], str]] = [
    ("forged-signature", _forged_signature, {}, "bad_signature"),
    ("unknown-key", _unknown_key, {}, "unknown_key"),
    ("expired", lambda r, c: _encode(r, _raw_claims(r, c, iat=int(c.now()) - 100, exp=int(c.now()) - 40)), {}, "expired"),
    ("not-yet-valid", lambda r, c: _encode(r, _raw_claims(r, c, iat=int(c.now()) + 120, exp=int(c.now()) + 150)), {}, "not_yet_valid"),
    ("nbf-in-future", lambda r, c: _encode(r, _raw_claims(r, c, nbf=int(c.now()) + 120)), {}, "not_yet_valid"),
    ("lifetime-over-60s", lambda r, c: _encode(r, _raw_claims(r, c, exp=int(c.now()) + 600)), {}, "lifetime_too_long"),
    ("other-audience", lambda r, c: _sign(r, c, audience="site-b"), {}, "wrong_audience"),
    ("other-issuer", lambda r, c: _sign(r, c, issuer="evil-broker"), {}, "wrong_issuer"),
    ("alg-none", _alg_none, {}, "bad_alg"),
    ("hs256-public-key-as-secret", _hs256_with_public_key, {}, "bad_alg"),
    ("other-method", lambda r, c: _sign(r, c), {"method": "DELETE"}, "wrong_method"),
    ("other-path", lambda r, c: _sign(r, c), {"path_qs": "/api/v1/launches?x=2"}, "wrong_path"),
    ("other-body", lambda r, c: _sign(r, c), {"body": b'{"provider":"gl"}'}, "wrong_body"),
    ("oversize", lambda r, c: _encode(r, _raw_claims(r, c, pad="x" * MAX_TOKEN_BYTES)), {}, "oversize_token"),
    ("missing-jti", lambda r, c: _encode(r, _raw_claims(r, c, jti=None)), {}, "missing_claim"),
    ("missing-iat", lambda r, c: _encode(r, _raw_claims(r, c, iat=None)), {}, "missing_claim"),
    ("document-as-request", lambda r, c: sign_document(r.signing_key, issuer=BROKER, payload={}, clock=c, ttl=30), {}, "wrong_type"),
    ("garbage", lambda r, c: "not.a.jwt", {}, "malformed_token"),
    ("four-segments", lambda r, c: _sign(r, c) + ".e30", {}, "malformed_token"),
    ("two-segments", lambda r, c: _sign(r, c).rsplit(".", 1)[0], {}, "malformed_token"),
    ("empty-signature", lambda r, c: _sign(r, c).rsplit(".", 1)[0] + ".", {}, "bad_signature"),
    ("standard-base64-signature", _standard_base64_signature, {}, "malformed_token"),
    ("spaces-in-signed-payload", lambda r, c: _signed_segments(r, c, "    " + _sign(r, c).split(".")[1]), {}, "malformed_token"),
    ("padded-signed-payload", lambda r, c: _signed_segments(r, c, _sign(r, c).split(".")[1] + "=="), {}, "malformed_token"),
    ("signed-payload-not-json", lambda r, c: _signed_segments(r, c, b64url(b"{not json")), {}, "malformed_token"),
    ("signed-payload-not-utf8", lambda r, c: _signed_segments(r, c, b64url(b'{"iss": "\xff"}')), {}, "malformed_token"),
    ("signed-payload-an-array", lambda r, c: _signed_segments(r, c, b64url(b"[]")), {}, "malformed_token"),
    ("non-ascii", lambda r, c: _sign(r, c) + "\u00e9", {}, "malformed_token"),
    ("header-not-an-object", lambda r, c: _resegment(_sign(r, c), 0, lambda seg: b64url(b'["EdDSA"]')), {}, "malformed_token"),
    ("crit-extension", lambda r, c: _encode(r, _raw_claims(r, c), crit=["exp"]), {}, "malformed_token"),
    ("empty", lambda r, c: "", {}, "missing_token"),
]


@pytest.mark.parametrize("make, overrides, reason", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_with_its_reason(ring, clock, make, overrides, reason) -> None:
    token = make(ring, clock)
    with pytest.raises(TokenError) as info:
        _verify(token, ring, clock, **overrides)
    assert info.value.reason == reason
    assert info.value.message  # a human-readable explanation for the 401 body


def test_valid_token_passes_and_binds_claims(ring, clock) -> None:
    claims = _verify(_sign(ring, clock), ring, clock)
    assert claims["htm"] == "POST" and claims["htu"] == PATH and claims["aud"] == MEMBER
    assert claims["exp"] - claims["iat"] <= 60


def test_replayed_token_is_refused(ring, clock) -> None:
    replay = ReplayCache()
    token = _sign(ring, clock)
    _verify(token, ring, clock, replay=replay)
    with pytest.raises(TokenError) as info:
        _verify(token, ring, clock, replay=replay)
    assert info.value.reason == "replayed"


def test_small_clock_skew_is_tolerated(ring, clock) -> None:
    token = _sign(ring, clock)
    clock.advance(30 + 4)  # 4 s past exp, inside the 5 s leeway
    _verify(token, ring, clock)


def test_ttl_is_capped_at_60_seconds(ring, clock) -> None:
    claims = _verify(_sign(ring, clock, ttl=3600), ring, clock)
    assert claims["exp"] - claims["iat"] == 60


def test_rotation_old_key_still_verifies_new_key_signs(ring, clock) -> None:
    rotated = ring.rotated(PrivateKey.generate(created=ring.signing_key.created + 10))
    old_token = _sign(ring, clock)
    assert rotated.signing_key.kid != ring.signing_key.kid
    _verify(old_token, rotated, clock)
    new_token = _sign(rotated, clock)
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.signing_key.kid
    with pytest.raises(TokenError):
        _verify(new_token, ring, clock)  # a verifier that never saw the new key refuses it


def test_signed_document_round_trip_and_tamper(ring, clock) -> None:
    token = sign_document(ring.signing_key, issuer=MEMBER, payload={"a": 1}, clock=clock, ttl=120)
    checked = verify_document(token, keys=ring.public_set(), issuer=MEMBER, clock=clock)
    assert checked["doc"] == {"a": 1}
    with pytest.raises(TokenError) as info:
        verify_document(token, keys=ring.public_set(), issuer="site-b", clock=clock)
    assert info.value.reason == "wrong_issuer"
    clock.advance(200)
    with pytest.raises(TokenError) as info:
        verify_document(token, keys=ring.public_set(), issuer=MEMBER, clock=clock)
    assert info.value.reason == "expired"


def test_request_token_cannot_pass_as_document(ring, clock) -> None:
    with pytest.raises(TokenError) as info:
        verify_document(_sign(ring, clock), keys=ring.public_set(), issuer=BROKER, clock=clock)
    assert info.value.reason == "wrong_type"


@pytest.mark.parametrize("value", [None, "", "Basic abc", "Bearer", "Bearer  "], ids=repr)
def test_bearer_header_must_be_well_formed(value) -> None:
    with pytest.raises(TokenError):
        bearer(value)


def test_real_clock_tokens_verify() -> None:
    from fedproto.clock import SystemClock

    ring = KeyRing([PrivateKey.generate()])
    token = _sign(ring, SystemClock())
    assert _verify(token, ring, SystemClock())["iat"] <= time.time() + 1


def test_tokens_are_standard_jws_both_ways(ring, clock) -> None:
    """Our tokens are signed and checked without PyJWT (for speed); another JOSE implementation
    must still read ours and we theirs, so a member written in another language can join."""
    ours = _sign(ring, clock)
    claims = jwt.decode(ours, ring.signing_key.key.public_key(), algorithms=["EdDSA"],
                        options={"verify_aud": False, "verify_exp": False, "verify_iat": False})
    assert claims["htu"] == PATH and jwt.get_unverified_header(ours)["typ"] == REQUEST_TYP
    document = sign_document(ring.signing_key, issuer=BROKER, payload={"k": ["v"]}, clock=clock, ttl=30)
    assert jwt.decode(document, ring.signing_key.key.public_key(), algorithms=["EdDSA"],
                      options={"verify_exp": False, "verify_iat": False})["doc"] == {"k": ["v"]}
    theirs = _encode(ring, _raw_claims(ring, clock))  # PyJWT's
    assert _verify(theirs, ring, clock)["htu"] == PATH
