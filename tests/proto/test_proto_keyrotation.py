"""Broker key rotation: the signed key set, when a new key may sign, live key directories, TLS reasons."""

from __future__ import annotations

import ssl
import time

import pytest

from fedproto.clock import FakeClock
from fedproto.errors import KeyMaterialError, TokenError
from fedproto.keyrotation import sign_key_set, signing_key, verify_key_set, waiting_on
from fedproto.keys import KeyDir, KeyRing, PrivateKey, PublicKeySet
from fedproto.tls import describe_failure, git_env, is_git_infrastructure_error, resolve_ca_bundle, CABundleError


def _ring() -> tuple[KeyRing, PrivateKey, PrivateKey]:
    old, new = PrivateKey.generate(created=1.0), PrivateKey.generate(created=2.0)
    return KeyRing([old, new]), old, new


def test_new_key_signs_only_once_every_member_pins_it() -> None:
    ring, old, new = _ring()
    members = ["a", "b"]
    assert signing_key(ring, {"a": [old.kid, new.kid], "b": [old.kid]}, members) is ring.get(old.kid)
    assert signing_key(ring, {"a": [old.kid, new.kid], "b": None}, members).kid == old.kid  # b has not said
    assert signing_key(ring, {"a": [old.kid, new.kid]}, members).kid == old.kid  # b never answered
    assert signing_key(ring, {"a": [old.kid, new.kid], "b": [new.kid, old.kid]}, members).kid == new.kid
    assert signing_key(ring, {}, []).kid == new.kid  # nobody to wait for
    assert waiting_on(ring, {"a": [old.kid, new.kid], "b": [old.kid]}, members) == {old.kid: [], new.kid: ["b"]}


def test_signed_key_set_is_accepted_only_from_a_pinned_key() -> None:
    clock = FakeClock(1000.0)
    ring, old, new = _ring()
    pinned = PublicKeySet([old.public])
    token = sign_key_set(old, issuer="broker", keys=ring.public_set(), clock=clock)
    assert verify_key_set(token, pinned=pinned, issuer="broker", clock=clock).kids == ring.public_set().kids

    stranger = PrivateKey.generate()
    forged = sign_key_set(stranger, issuer="broker", keys=PublicKeySet([stranger.public]), clock=clock)
    with pytest.raises(TokenError) as exc:
        verify_key_set(forged, pinned=pinned, issuer="broker", clock=clock)
    assert exc.value.reason == "unknown_key"
    with pytest.raises(TokenError):
        verify_key_set(token, pinned=pinned, issuer="another-broker", clock=clock)
    # A set that drops the key vouching for it is refused: retiring goes through the new key.
    dropping = sign_key_set(old, issuer="broker", keys=PublicKeySet([new.public]), clock=clock)
    with pytest.raises(TokenError, match="drops the key"):
        verify_key_set(dropping, pinned=pinned, issuer="broker", clock=clock)
    clock.advance(3600)
    with pytest.raises(TokenError):
        verify_key_set(token, pinned=pinned, issuer="broker", clock=clock)


def test_key_ring_grows_and_retires_but_never_empties() -> None:
    ring = KeyRing([PrivateKey.generate(created=1.0)])
    grown = ring.with_new_key()
    assert len(grown.keys) == 2 and grown.signing_key.kid != ring.signing_key.kid
    assert grown.without(ring.signing_key.kid).keys == [grown.signing_key]
    with pytest.raises(KeyMaterialError):
        ring.without(ring.signing_key.kid)
    with pytest.raises(KeyMaterialError):
        grown.without("no-such-kid")


def test_key_dir_follows_its_directory_and_survives_a_half_written_one(tmp_path) -> None:
    ring = KeyRing([PrivateKey.generate(created=1.0)])
    ring.save(tmp_path)
    live = KeyDir(tmp_path, min_interval=0.0)
    assert live.current().signing_key.kid == ring.signing_key.kid
    grown = ring.with_new_key(PrivateKey.generate(created=time.time()))
    grown.save(tmp_path)
    assert live.current().signing_key.kid == grown.signing_key.kid
    (tmp_path / "ed25519-00000000000000000003.pem").write_text("half written")
    assert live.current().signing_key.kid == grown.signing_key.kid  # kept the last good ring
    fixed = KeyDir(None, ring)
    assert fixed.current() is ring and fixed.reload() is False


def test_tls_failures_are_named_for_people() -> None:
    err = ssl.SSLCertVerificationError(1, "certificate verify failed")
    err.verify_message = "self-signed certificate in certificate chain"
    wrapped = OSError("connect failed")
    wrapped.__cause__ = err
    assert describe_failure(wrapped) == "certificate verify failed: self-signed certificate in certificate chain"
    assert describe_failure(ConnectionRefusedError(111, "Connection refused")) == "connection refused"


def test_git_transport_errors_are_infrastructure_not_repository() -> None:
    assert is_git_infrastructure_error("fatal: unable to access 'https://h/r/': SSL certificate problem: unable to get local issuer certificate")
    assert is_git_infrastructure_error("fatal: unable to access 'https://h/r/': Failed to connect to h port 443")
    assert is_git_infrastructure_error("fatal: unable to access 'https://h/r/': The requested URL returned error: 502")
    assert not is_git_infrastructure_error("fatal: unable to access 'https://h/r/': The requested URL returned error: 404")
    assert not is_git_infrastructure_error("fatal: repository 'https://h/r/' not found")


def test_ca_bundle_setting_resolves_relative_and_refuses_a_missing_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FEDERATION_CA_BUNDLE", raising=False)
    assert resolve_ca_bundle("") is None
    (tmp_path / "ca.pem").write_text("x")
    assert resolve_ca_bundle("ca.pem", base=tmp_path) == str(tmp_path / "ca.pem")
    monkeypatch.setenv("FEDERATION_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert resolve_ca_bundle(None) == str(tmp_path / "ca.pem")
    with pytest.raises(CABundleError, match="does not exist"):
        resolve_ca_bundle("missing.pem", base=tmp_path)
    assert git_env(str(tmp_path / "ca.pem")) == {"GIT_SSL_CAINFO": str(tmp_path / "ca.pem")}
