"""Keys: files with the right modes, JWKS round trips, thumbprints, and refusing non-Ed25519 keys."""

from __future__ import annotations

import json
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fedproto.errors import KeyMaterialError
from fedproto.keys import KeyRing, PrivateKey, PublicKey, PublicKeySet, b64url, thumbprint


def test_rfc7638_thumbprint_of_the_rfc8037_example_key() -> None:
    # RFC 8037 appendix A.3 gives this Ed25519 public key and its RFC 7638 thumbprint.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert PublicKey.from_jwk(jwk).kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_save_and_load_keep_modes_and_order(tmp_path) -> None:
    first = PrivateKey.generate(created=1000.0)
    ring = KeyRing([first]).rotated(PrivateKey.generate(created=2000.0))
    ring.save(tmp_path / "keys")
    files = sorted((tmp_path / "keys").glob("*.pem"))
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    loaded = KeyRing.load(tmp_path / "keys")
    assert loaded.signing_key.kid == ring.signing_key.kid != first.kid
    assert [k.kid for k in loaded.keys] == [k.kid for k in ring.keys]


def test_rotation_keeps_bounded_history(tmp_path) -> None:
    ring = KeyRing([PrivateKey.generate(created=1.0)])
    for t in (2.0, 3.0, 4.0):
        ring = ring.rotated(PrivateKey.generate(created=t))
    assert len(ring.keys) == 2
    ring.save(tmp_path)
    assert len(list(tmp_path.glob("*.pem"))) == 2


def test_load_or_create_creates_once(tmp_path) -> None:
    a = KeyRing.load_or_create(tmp_path / "k")
    b = KeyRing.load_or_create(tmp_path / "k")
    assert a.signing_key.kid == b.signing_key.kid


def test_jwks_round_trip_newest_first() -> None:
    ring = KeyRing([PrivateKey.generate(created=1.0), PrivateKey.generate(created=2.0)])
    jwks = ring.public_set().to_jwks()
    assert jwks["keys"][0]["kid"] == ring.signing_key.kid
    assert all(set(k) == {"kty", "crv", "x", "kid", "use", "alg"} for k in jwks["keys"])
    again = PublicKeySet.from_jwks(json.loads(json.dumps(jwks)))
    assert again.kids == ring.public_set().kids


def _rsa_jwk() -> dict:
    pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    return {"kty": "RSA", "n": b64url(pub.n.to_bytes(256, "big")), "e": "AQAB"}


def _ec_jwk() -> dict:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64url(pub.x.to_bytes(32, "big")), "y": b64url(pub.y.to_bytes(32, "big"))}


BAD_JWKS = [
    ("rsa-key", {"keys": [_rsa_jwk()]}),
    ("ec-key", {"keys": [_ec_jwk()]}),
    ("x25519-key", {"keys": [{"kty": "OKP", "crv": "X25519", "x": b64url(b"\x01" * 32)}]}),
    ("private-part", {"keys": [{**PrivateKey.generate().public.to_jwk(), "d": b64url(b"\x02" * 32)}]}),
    ("short-x", {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(b"\x01" * 31)}]}),
    ("kid-not-thumbprint", {"keys": [{**PrivateKey.generate().public.to_jwk(), "kid": "mine"}]}),
    ("wrong-alg", {"keys": [{**PrivateKey.generate().public.to_jwk(), "alg": "RS256"}]}),
    ("empty", {"keys": []}),
    ("not-a-list", {"keys": "abc"}),
    ("not-an-object", ["abc"]),
    ("too-many", {"keys": [PrivateKey.generate().public.to_jwk() for _ in range(17)]}),
]


@pytest.mark.parametrize("jwks", [b[1] for b in BAD_JWKS], ids=[b[0] for b in BAD_JWKS])
def test_bad_jwks_is_refused(jwks) -> None:
    with pytest.raises(KeyMaterialError):
        PublicKeySet.from_jwks(jwks)


def test_private_key_repr_has_no_secret() -> None:
    key = PrivateKey.generate()
    assert "PRIVATE" not in repr(key) and key.kid in repr(key)
    assert thumbprint(key.key.public_key()) == key.kid
