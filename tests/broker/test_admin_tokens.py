"""More admin tokens: minted once through the API or CLI, never with more scopes than their creator."""

from __future__ import annotations

import sqlite3

import pytest


async def _mint(broker, headers, **body):
    return await broker.post("/api/v1/admin-tokens", json={"name": "ops", "scopes": ["members:read"], **body},
                             headers=headers)


async def test_minted_token_works_for_its_scopes_only(broker, admin_headers) -> None:
    resp = await _mint(broker, admin_headers)
    assert resp.status == 201
    answer = await resp.json()
    assert answer["scopes"] == ["members:read"] and answer["token"].startswith("fedadmin_")
    reader = {"Authorization": f"Bearer {answer['token']}"}
    assert (await broker.get("/api/v1/members", headers=reader)).status == 200
    refused = await broker.post("/api/v1/members/m1/drain", headers=reader)
    assert refused.status == 403 and (await refused.json())["error"] == "missing_scope"


async def test_no_scope_escalation(broker, add_admin_token) -> None:
    limited = await add_admin_token(broker, scopes=("tokens:write", "members:read"))
    resp = await _mint(broker, {"Authorization": f"Bearer {limited}"}, scopes=["members:read", "members:write"])
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "scope_escalation" and "members:write" in body["message"]


@pytest.mark.parametrize("body", [
    pytest.param({"scopes": []}, id="no-scopes"),
    pytest.param({"scopes": ["everything"]}, id="unknown-scope"),
    pytest.param({"ttl": 0}, id="zero-ttl"),
    pytest.param({"extra": 1}, id="unknown-field"),
])
async def test_bad_requests_are_400(broker, admin_headers, body) -> None:
    resp = await _mint(broker, admin_headers, **body)
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_body"


async def test_secret_is_not_stored_or_audited(broker, admin_headers, broker_config) -> None:
    answer = await (await _mint(broker, admin_headers)).json()
    db = broker_config.resolved_db_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
        actions = [row[0] for row in conn.execute("SELECT action FROM audit_log")]
    assert answer["token"] not in dump
    assert "admin_token.create" in actions


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_minted_token_never_outlives_its_creator(broker, add_admin_token, clock) -> None:
    short = await add_admin_token(broker, scopes=("tokens:write", "members:read"), ttl=60.0)
    resp = await _mint(broker, _bearer(short), ttl=3650 * 86400.0)
    assert resp.status == 201
    child = await resp.json()
    assert child["expires_at"] <= clock.now() + 60.0
    clock.advance(61.0)
    refused = await broker.get("/api/v1/members", headers=_bearer(child["token"]))
    assert refused.status == 401 and (await refused.json())["error"] == "expired_token"


async def test_auto_approve_needs_members_write(broker, add_admin_token, admin_headers) -> None:
    narrow = await add_admin_token(broker, scopes=("tokens:write",))
    body = {"name": "sneaky", "auto_approve": True}
    resp = await broker.post("/api/v1/enroll-tokens", json=body, headers=_bearer(narrow))
    assert resp.status == 403 and (await resp.json())["error"] == "scope_escalation"
    tokens = await (await broker.get("/api/v1/enroll-tokens", headers=admin_headers)).json()
    assert tokens["tokens"] == []  # nothing was written
    assert (await broker.post("/api/v1/enroll-tokens", json=body, headers=admin_headers)).status == 201


async def test_revoked_admin_token_stops_at_once_and_is_audited(broker, admin_headers) -> None:
    child = await (await _mint(broker, admin_headers, scopes=["members:read", "tokens:write"])).json()
    assert (await broker.get("/api/v1/members", headers=_bearer(child["token"]))).status == 200
    resp = await broker.delete(f"/api/v1/admin-tokens/{child['id']}", headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["revoked_at"] is not None
    refused = await broker.get("/api/v1/members", headers=_bearer(child["token"]))
    assert refused.status == 401 and (await refused.json())["error"] == "revoked_token"
    listed = {t["id"]: t for t in (await (await broker.get("/api/v1/admin-tokens", headers=admin_headers)).json())["tokens"]}
    assert listed[child["id"]]["revoked_at"] is not None and "token" not in listed[child["id"]]
    again = await broker.delete(f"/api/v1/admin-tokens/{child['id']}", headers=admin_headers)
    assert again.status == 200
    missing = await broker.delete("/api/v1/admin-tokens/adm_nope", headers=admin_headers)
    assert missing.status == 404


async def test_a_narrow_token_cannot_revoke_a_broader_one(broker, admin_headers, add_admin_token) -> None:
    narrow = await add_admin_token(broker, scopes=("tokens:write",), name="narrow")
    listed = (await (await broker.get("/api/v1/admin-tokens", headers=admin_headers)).json())["tokens"]
    root = next(t for t in listed if t["name"] == "test-admin")
    resp = await broker.delete(f"/api/v1/admin-tokens/{root['id']}", headers=_bearer(narrow))
    assert resp.status == 403 and (await resp.json())["error"] == "scope_escalation"
    assert (await broker.get("/api/v1/members", headers=admin_headers)).status == 200


async def test_revoked_enrollment_token_cannot_enroll(broker, admin_headers, mint_token, do_enroll, member_kit) -> None:
    token = await mint_token(broker, admin_headers)
    (row,) = (await (await broker.get("/api/v1/enroll-tokens", headers=admin_headers)).json())["tokens"]
    resp = await broker.delete(f"/api/v1/enroll-tokens/{row['id']}", headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["revoked_at"] is not None
    refused = await do_enroll(broker, member_kit("late"), token)
    assert refused.status == 401 and (await refused.json())["error"] == "revoked_enrollment_token"
    members = await (await broker.get("/api/v1/members", headers=admin_headers)).json()
    assert members["members"] == []
