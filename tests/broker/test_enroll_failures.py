"""Every way an enrollment can be refused: each is a 4xx with its reason, and nothing is written."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import pytest
import sqlalchemy as sa

from fedbroker.registry import tables
from fedbroker.appkeys import REGISTRY
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import PrivateKey


async def registry_state(client: Any) -> tuple[Any, ...]:
    """Everything an enrollment could write: members, revision, audit entries, token use."""
    async with client.app[REGISTRY].store.read() as tx:
        members = [m.model_dump() for m in await tx.members()]
        used = (await tx.conn.execute(sa.select(tables.enroll_tokens.c.used_at))).all()
        return members, await tx.revision(), len(await tx.audit_entries()), used


@dataclass
class Ctx:
    client: Any
    kit: Any
    token: str
    clock: Any
    headers: dict[str, str]
    mint: Callable[..., Awaitable[str]]
    member_kit: Callable[[str], Any]
    do_enroll: Callable[..., Awaitable[Any]]

    @property
    def kid(self) -> str:
        return EnrollmentToken.parse(self.token).broker_kid

    async def post(self, body: dict[str, Any], **sign: Any) -> Any:
        sign.setdefault("audience", self.kid)
        raw, headers = self.kit.signed("/api/v1/enroll", body, clock=self.clock, **sign)
        return await self.client.post("/api/v1/enroll", data=raw, headers=headers)


Attempt = Callable[[], Awaitable[Any]]


# Each case does its setup (which may write) and returns the attempt that must be refused.
async def no_authorization(c: Ctx) -> Attempt:
    return lambda: c.client.post("/api/v1/enroll", json=c.kit.enrollment_body(c.token))


async def malformed_token(c: Ctx) -> Attempt:
    return lambda: c.post(c.kit.enrollment_body("fedenroll_short.x"))


async def unknown_secret(c: Ctx) -> Attempt:
    forged = str(EnrollmentToken(secret="A" * 43, broker_kid=c.kid))
    return lambda: c.post(c.kit.enrollment_body(forged))


async def expired(c: Ctx) -> Attempt:
    token = await c.mint(c.client, c.headers, ttl=60)
    c.clock.advance(61)
    return lambda: c.post(c.kit.enrollment_body(token))


async def reused(c: Ctx) -> Attempt:
    assert (await c.do_enroll(c.client, c.member_kit("first"), c.token)).status == 201
    return lambda: c.post(c.kit.enrollment_body(c.token))


async def other_broker_kid(c: Ctx) -> Attempt:
    other = EnrollmentToken(secret=EnrollmentToken.parse(c.token).secret, broker_kid=PrivateKey.generate().kid)
    return lambda: c.post(c.kit.enrollment_body(str(other)), audience=other.broker_kid)


async def pop_key_not_in_jwks(c: Ctx) -> Attempt:
    return lambda: c.post(c.kit.enrollment_body(c.token), key=PrivateKey.generate())


async def wrong_audience(c: Ctx) -> Attempt:
    return lambda: c.post(c.kit.enrollment_body(c.token), audience="broker")


async def wrong_issuer(c: Ctx) -> Attempt:
    return lambda: c.post(c.kit.enrollment_body(c.token), issuer="someone-else")


async def body_not_signed(c: Ctx) -> Attempt:
    body = c.kit.enrollment_body(c.token)
    _, headers = c.kit.signed("/api/v1/enroll", body, audience=c.kid, clock=c.clock)
    tampered = json.dumps({**body, "display_name": "tampered"}).encode()
    return lambda: c.client.post("/api/v1/enroll", data=tampered, headers=headers)


async def replayed_request(c: Ctx) -> Attempt:
    # The first request is refused after its proof of possession verified (http URL),
    # so its jti is spent; resending it must be refused as a replay.
    body = c.kit.enrollment_body(c.token, agent_url="http://agent.example.org")
    raw, headers = c.kit.signed("/api/v1/enroll", body, audience=c.kid, clock=c.clock)
    assert (await c.client.post("/api/v1/enroll", data=raw, headers=headers)).status == 400
    return lambda: c.client.post("/api/v1/enroll", data=raw, headers=headers)


async def non_ed25519_jwks(c: Ctx) -> Attempt:
    rsa = {"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "rsa1"}
    return lambda: c.post(c.kit.enrollment_body(c.token, jwks={"keys": [rsa]}))


async def http_without_dev(c: Ctx) -> Attempt:
    return lambda: c.post(c.kit.enrollment_body(c.token, agent_url="http://127.0.0.1:8000"))


async def not_a_url(c: Ctx) -> Attempt:
    return lambda: c.post(c.kit.enrollment_body(c.token, public_url="javascript:alert(1)"))


async def hijack_existing_id(c: Ctx) -> Attempt:
    assert (await c.do_enroll(c.client, c.member_kit("newbie"), c.token)).status == 201
    token = await c.mint(c.client, c.headers)
    return lambda: c.do_enroll(c.client, c.kit, token)  # same id, a different key


CASES = [
    pytest.param(no_authorization, 401, "missing_token", id="no-request-token"),
    pytest.param(malformed_token, 401, "bad_enrollment_token", id="malformed-enrollment-token"),
    pytest.param(unknown_secret, 401, "unknown_enrollment_token", id="unknown-secret"),
    pytest.param(expired, 401, "expired_enrollment_token", id="expired"),
    pytest.param(reused, 401, "used_enrollment_token", id="reused"),
    pytest.param(other_broker_kid, 401, "wrong_broker", id="token-for-another-broker-key"),
    pytest.param(pop_key_not_in_jwks, 401, "unknown_key", id="pop-key-not-in-jwks"),
    pytest.param(wrong_audience, 401, "wrong_audience", id="wrong-audience"),
    pytest.param(wrong_issuer, 401, "wrong_issuer", id="issuer-is-not-member-id"),
    pytest.param(body_not_signed, 401, "wrong_body", id="body-not-the-signed-one"),
    pytest.param(replayed_request, 401, "replayed", id="replayed-request-token"),
    pytest.param(non_ed25519_jwks, 400, "bad_key", id="non-ed25519-jwks"),
    pytest.param(http_without_dev, 400, "insecure_url", id="http-without-dev"),
    pytest.param(not_a_url, 400, "invalid_url", id="not-an-http-url"),
    pytest.param(hijack_existing_id, 409, "member_exists", id="hijack-existing-id"),
]


@pytest.mark.parametrize(("case", "status", "reason"), CASES)
async def test_enrollment_refused(case, status, reason, broker, admin_headers, mint_token, do_enroll,
                                  member_kit, clock):
    token = await mint_token(broker, admin_headers)
    ctx = Ctx(broker, member_kit("newbie"), token, clock, admin_headers, mint_token, member_kit, do_enroll)
    attempt = await case(ctx)
    before = await registry_state(broker)
    resp = await attempt()
    assert resp.status == status, await resp.text()
    assert (await resp.json())["error"] == reason
    assert await registry_state(broker) == before


async def test_http_on_non_loopback_refused_even_with_dev(make_broker, add_admin_token, mint_token,
                                                          do_enroll, member_kit):
    client = await make_broker(dev=True)
    headers = {"Authorization": f"Bearer {await add_admin_token(client)}"}
    token = await mint_token(client, headers)
    before = await registry_state(client)
    resp = await do_enroll(client, member_kit("lan"), token, agent_url="http://10.0.0.5:8000")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "insecure_url" and "loopback" in body["message"]
    assert await registry_state(client) == before


async def test_two_concurrent_uses_of_one_token_exactly_one_wins(db_url, make_broker, add_admin_token,
                                                                 mint_token, do_enroll, member_kit):
    broker = await make_broker(db_url=db_url)
    admin_headers = {"Authorization": f"Bearer {await add_admin_token(broker)}"}
    token = await mint_token(broker, admin_headers)
    kits = [member_kit(f"racer-{i}") for i in range(2)]
    responses = await asyncio.gather(*(do_enroll(broker, kit, token) for kit in kits))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 401]
    loser = next(r for r in responses if r.status == 401)
    assert (await loser.json())["error"] == "used_enrollment_token"
    assert len(broker.app[REGISTRY].snapshot.members) == 1
