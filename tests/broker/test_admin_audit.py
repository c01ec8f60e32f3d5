"""The audit log: every admin and member change leaves an entry, and no secret is ever written or logged."""

from __future__ import annotations

import logging
from pathlib import Path

from fedbroker.appkeys import REGISTRY
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import PrivateKey, PublicKeySet


async def test_audit_entries_and_no_secrets_anywhere(broker, admin_token, admin_headers, mint_token, do_enroll,
                                                     member_kit, clock, caplog, tmp_path: Path):
    caplog.set_level(logging.DEBUG)
    token = await mint_token(broker, admin_headers)
    kit = member_kit("audited")
    assert (await do_enroll(broker, kit, token)).status == 201
    # A refused reuse, so error paths are covered by the secret check too.
    assert (await do_enroll(broker, member_kit("again"), token)).status == 401
    for action in ("approve", "drain", "undrain", "drain"):
        assert (await broker.post(f"/api/v1/members/audited/{action}", headers=admin_headers)).status == 200
    assert (await broker.patch("/api/v1/members/audited", json={"weight": 3},
                               headers=admin_headers)).status == 200
    jwks = PublicKeySet([PrivateKey.generate().public]).to_jwks()
    assert (await broker.post("/api/v1/members", headers=admin_headers, json={
        "id": "pre", "display_name": "Pre", "agent_url": "https://p.example.org",
        "public_url": "https://p.example.org", "jwks": jwks})).status == 201
    assert (await broker.delete("/api/v1/members/audited", headers=admin_headers)).status == 200

    async with broker.app[REGISTRY].store.read() as tx:
        entries = await tx.audit_entries()
    # The actor is the acting token's id (names are free-form and not unique).
    async with broker.app[REGISTRY].store.read() as tx:
        (token_row,) = [t for t in await tx.admin_tokens() if t.name == "test-admin"]
    me = f"admin:{token_row.id}"
    actions = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert actions[0][:2] == (me, "enroll_token.create")
    assert actions[1:] == [
        ("member:audited", "member.enroll", "audited"),
        (me, "member.approve", "audited"),
        (me, "member.drain", "audited"),
        (me, "member.undrain", "audited"),
        (me, "member.drain", "audited"),
        (me, "member.update", "audited"),
        (me, "member.create", "pre"),
        (me, "member.remove", "audited"),
    ]
    assert entries[2]["details"] == {"from": "pending", "to": "active"}
    assert all(e["at"] == clock.now() for e in entries)

    secrets = [admin_token, token, EnrollmentToken.parse(token).secret]
    text = "\n".join(str(e) for e in entries) + caplog.text
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("registry.sqlite*"))
    assert db_bytes, "the registry database should exist in tmp_path"
    for secret in secrets:
        assert secret not in text
        assert secret.encode() not in db_bytes
