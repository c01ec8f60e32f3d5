"""Launch tickets: a ticket opens exactly the launch it names, on the member it names, once, for a minute."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fedproto.claims import LaunchTicketClaims
from fedproto.clock import FakeClock
from fedproto.errors import TokenError
from fedproto.keys import KeyRing, PrivateKey
from fedproto.replay import ReplayCache
from fedproto.tickets import MAX_TICKET_LIFETIME, sign_ticket, verify_ticket
from fedproto.tokens import sign_request

BROKER, MEMBER = "broker", "site-a"
LAUNCH = {"provider": "gh", "spec": "org/repo/main", "data": ["10.5281/zenodo.1"]}


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([PrivateKey.generate()])


def _sign(ring: KeyRing, clock: FakeClock, **overrides: Any) -> str:
    args: dict[str, Any] = dict(issuer=BROKER, audience=MEMBER, launch_id="launch-0001", clock=clock,
                                origin="http://127.0.0.1:9000", client_ip="192.0.2.7", **LAUNCH)
    args.update(overrides)
    return sign_ticket(ring.signing_key, **args)


def _verify(token: str, ring: KeyRing, clock: FakeClock, replay: ReplayCache | None = None, **overrides: Any) -> dict:
    args: dict[str, Any] = dict(keys=ring.public_set(), issuer=BROKER, audience=MEMBER, clock=clock,
                                replay=replay if replay is not None else ReplayCache(), **LAUNCH)
    args.update(overrides)
    return verify_ticket(token, **args)


def _reason(call) -> str:
    with pytest.raises(TokenError) as info:
        call()
    return info.value.reason


def test_a_ticket_opens_its_launch_and_carries_who_asked(ring: KeyRing) -> None:
    clock = FakeClock()
    claims = _verify(_sign(ring, clock), ring, clock)
    LaunchTicketClaims.model_validate(claims)  # the published schema describes what is signed
    assert (claims["launch_id"], claims["origin"], claims["client_ip"]) == ("launch-0001", "http://127.0.0.1:9000", "192.0.2.7")


def test_a_replayed_ticket_is_refused(ring: KeyRing) -> None:
    clock, replay = FakeClock(), ReplayCache()
    token = _sign(ring, clock)
    _verify(token, ring, clock, replay)
    assert _reason(lambda: _verify(token, ring, clock, replay)) == "replayed"


def test_an_expired_ticket_is_refused(ring: KeyRing) -> None:
    clock = FakeClock()
    token = _sign(ring, clock)
    clock.advance(MAX_TICKET_LIFETIME + 10)
    assert _reason(lambda: _verify(token, ring, clock)) == "expired"


def test_a_ticket_never_lives_longer_than_a_minute(ring: KeyRing) -> None:
    clock = FakeClock()
    claims = _verify(_sign(ring, clock, ttl=3600), ring, clock)
    assert claims["exp"] - claims["iat"] <= MAX_TICKET_LIFETIME


def test_a_ticket_for_another_member_is_refused(ring: KeyRing) -> None:
    clock = FakeClock()
    assert _reason(lambda: _verify(_sign(ring, clock, audience="site-b"), ring, clock)) == "wrong_audience"


@pytest.mark.parametrize("asked", [
    {"spec": "org/other/main"},
    {"spec": "org/repo/v2"},  # the ref is bound too
    {"provider": "gl"},
    {"data": []},
    {"data": ["10.5281/zenodo.1", "10.5281/zenodo.2"]},
], ids=["other-repo", "other-ref", "other-provider", "data-dropped", "data-added"])
def test_a_ticket_opens_no_other_launch(ring: KeyRing, asked: dict) -> None:
    clock = FakeClock()
    assert _reason(lambda: _verify(_sign(ring, clock), ring, clock, **asked)) == "wrong_launch"


def test_a_ticket_with_a_tampered_spec_is_refused(ring: KeyRing) -> None:
    """Rewriting the signed spec (and asking for the rewritten one) breaks the signature."""
    clock = FakeClock()
    header, payload, signature = _sign(ring, clock).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["spec"] = "attacker/repo/main"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    token = f"{header}.{forged}.{signature}"
    assert _reason(lambda: _verify(token, ring, clock, spec="attacker/repo/main")) == "bad_signature"


def test_a_ticket_signed_by_another_key_is_refused(ring: KeyRing) -> None:
    clock = FakeClock()
    other = KeyRing([PrivateKey.generate()])
    assert _reason(lambda: _verify(_sign(other, clock), ring, clock)) == "unknown_key"


def test_a_request_token_is_not_a_ticket(ring: KeyRing) -> None:
    clock = FakeClock()
    token = sign_request(ring.signing_key, issuer=BROKER, audience=MEMBER, method="GET", path_qs="/", body=b"", clock=clock)
    assert _reason(lambda: _verify(token, ring, clock)) == "wrong_type"


def test_a_refused_ticket_is_not_used_up(ring: KeyRing) -> None:
    """The replay cache is the last check: a ticket tried against the wrong launch still works for its own."""
    clock, replay = FakeClock(), ReplayCache()
    token = _sign(ring, clock)
    assert _reason(lambda: _verify(token, ring, clock, replay, spec="org/other/main")) == "wrong_launch"
    _verify(token, ring, clock, replay)
