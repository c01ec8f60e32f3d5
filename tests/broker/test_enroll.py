"""Enrollment: the happy paths (pending, auto-approve, re-enrollment) and the signed answer."""

from __future__ import annotations

import json

from fedbroker.appkeys import REGISTRY
from fedproto.enrollment import EnrollmentResponse, EnrollmentToken
from fedproto.keys import PrivateKey, PublicKeySet
from fedproto.member import MemberState
from fedproto.tokens import verify_document


async def test_enroll_starts_pending_and_answer_is_signed(broker, admin_headers, mint_token, do_enroll,
                                                          member_kit, clock, broker_keyring):
    token = await mint_token(broker, admin_headers)
    resp = await do_enroll(broker, member_kit("alpha"), token)
    assert resp.status == 201, await resp.text()
    raw = await resp.read()
    answer = EnrollmentResponse.model_validate_json(raw)
    assert answer.member_id == "alpha" and answer.state is MemberState.pending
    assert answer.broker_jwks == broker_keyring.public_set().to_jwks()
    # The member pins the key named by the token's thumbprint and checks the signature with it.
    pinned = PublicKeySet([k.public for k in broker_keyring.keys
                           if k.kid == EnrollmentToken.parse(token).broker_kid])
    signed = verify_document(resp.headers["Federation-Signature"], keys=pinned, issuer="broker", clock=clock)
    assert signed["doc"] == json.loads(raw)
    assert broker.app[REGISTRY].snapshot.members["alpha"].record.state is MemberState.pending


async def test_auto_approve_token_makes_member_active(broker, admin_headers, mint_token, do_enroll, member_kit):
    token = await mint_token(broker, admin_headers, auto_approve=True)
    resp = await do_enroll(broker, member_kit("beta"), token)
    assert resp.status == 201
    assert (await resp.json())["state"] == "active"


async def test_reenrollment_with_key_on_file_updates_metadata_and_keeps_state(
        broker, admin_headers, mint_token, do_enroll, member_kit):
    kit = member_kit("gamma")
    assert (await do_enroll(broker, kit, await mint_token(broker, admin_headers))).status == 201
    assert (await broker.post("/api/v1/members/gamma/approve", headers=admin_headers)).status == 200
    # Same key, a second key added, a new display name.
    extra = PrivateKey.generate()
    jwks = PublicKeySet([kit.key.public, extra.public]).to_jwks()
    resp = await do_enroll(broker, kit, await mint_token(broker, admin_headers),
                           display_name="Gamma renamed", jwks=jwks)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["state"] == "active"
    record = broker.app[REGISTRY].snapshot.members["gamma"].record
    assert record.display_name == "Gamma renamed"
    assert len(record.jwks["keys"]) == 2


async def test_dev_allows_http_on_loopback(make_broker, add_admin_token, mint_token, do_enroll, member_kit):
    client = await make_broker(dev=True)
    headers = {"Authorization": f"Bearer {await add_admin_token(client)}"}
    resp = await do_enroll(client, member_kit("local"), await mint_token(client, headers),
                           agent_url="http://127.0.0.1:9000", public_url="http://localhost:9001/")
    assert resp.status == 201, await resp.text()
    assert client.app[REGISTRY].snapshot.members["local"].record.public_url == "http://localhost:9001"
