"""Enrollment against a tiny in-test broker that implements exactly the documented exchange."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fedmember.config import load_config
from fedmember.enroll import EnrollError, enroll
from fedmember.scaffold import init_member
from fedproto.clock import SystemClock
from fedproto.enrollment import EnrollmentRequest, EnrollmentResponse, EnrollmentToken
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.member import MemberState
from fedproto.tokens import bearer, sign_document, verify_request

BROKER_ID = "stub-broker"


def broker_stub(ring: KeyRing, token: EnrollmentToken, mode: str = "ok") -> web.Application:
    """POST /api/v1/enroll: checks the proof of possession, answers a signed EnrollmentResponse."""
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        enrollment = EnrollmentRequest.model_validate_json(body)
        if enrollment.token != str(token):
            return web.json_response({"error": "bad_enrollment_token", "message": "unknown token"}, status=401)
        verify_request(
            bearer(request.headers.get("Authorization")),
            keys=PublicKeySet.from_jwks(enrollment.jwks),
            issuer=enrollment.member_id,
            audience=token.broker_kid,
            method="POST",
            path_qs=request.raw_path,
            body=body,
            clock=SystemClock(),
            replay=None,
        )
        answer = EnrollmentResponse(
            member_id=enrollment.member_id, state=MemberState.pending, broker_id=BROKER_ID,
            broker_jwks=ring.public_set().to_jwks(),
        ).model_dump(mode="json")  # fmt: skip
        signer = PrivateKey.generate() if mode == "wrong_key" else ring.signing_key
        doc = {**answer, "state": "active"} if mode == "tampered" else answer
        headers = {} if mode == "no_signature" else {
            "Federation-Signature": sign_document(signer, issuer=BROKER_ID, payload=doc, clock=SystemClock(), ttl=300)
        }  # fmt: skip
        return web.json_response(answer, headers=headers)

    app = web.Application()
    app.router.add_post("/api/v1/enroll", handle)
    return app


@pytest.fixture
def member_dir(tmp_path: Path) -> Path:
    init_member(tmp_path / "m", "local", member_id="site-a", agent_url="http://127.0.0.1:8585")
    return tmp_path / "m"


async def test_enroll_pins_broker_keys(aiohttp_server: Any, member_dir: Path) -> None:
    ring = KeyRing([PrivateKey.generate()])
    token = EnrollmentToken.new(ring.signing_key.kid)
    server = await aiohttp_server(broker_stub(ring, token))
    url = str(server.make_url("/")).rstrip("/")
    response = await enroll(load_config(member_dir), url, str(token))
    assert response.state == MemberState.pending
    pinned = json.loads((member_dir / "broker.jwks.json").read_text())
    assert PublicKeySet.from_jwks(pinned).kids == [ring.signing_key.kid]
    config = load_config(member_dir)
    assert (config.broker.url, config.broker.id) == (url, BROKER_ID)
    text = (member_dir / "member.toml").read_text()
    assert "# Filled in by" in text  # comments kept, and the values stay below their own comment
    broker_table = text[text.index("[broker]"):]
    assert broker_table.index("# Filled in by") < broker_table.index(f"url = \"{url}\"") < broker_table.index("[backend]")


@pytest.mark.parametrize("mode", ["wrong_key", "tampered", "no_signature", "unpinned"])
async def test_untrusted_answers_write_nothing(aiohttp_server: Any, member_dir: Path, mode: str) -> None:
    ring = KeyRing([PrivateKey.generate()])
    kid = PrivateKey.generate().kid if mode == "unpinned" else ring.signing_key.kid
    token = EnrollmentToken.new(kid)
    server = await aiohttp_server(broker_stub(ring, token, mode))
    before = (member_dir / "member.toml").read_text()
    with pytest.raises(EnrollError, match="refusing to trust"):
        await enroll(load_config(member_dir), str(server.make_url("/")), str(token))
    assert not (member_dir / "broker.jwks.json").exists()
    assert (member_dir / "member.toml").read_text() == before


async def test_refused_enrollment_is_a_clear_error(aiohttp_server: Any, member_dir: Path) -> None:
    ring = KeyRing([PrivateKey.generate()])
    server = await aiohttp_server(broker_stub(ring, EnrollmentToken.new(ring.signing_key.kid)))
    other = EnrollmentToken.new(ring.signing_key.kid)
    with pytest.raises(EnrollError, match="HTTP 401.*bad_enrollment_token"):
        await enroll(load_config(member_dir), str(server.make_url("/")), str(other))


async def test_malformed_token(member_dir: Path) -> None:
    with pytest.raises(EnrollError, match="malformed"):
        await enroll(load_config(member_dir), "http://127.0.0.1:9", "not-a-token")
