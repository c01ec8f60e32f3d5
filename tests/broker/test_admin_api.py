"""The admin API: scopes, member CRUD, enrollment tokens, key rotation, malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fedbroker.appkeys import REGISTRY
from fedproto.keys import PrivateKey, PublicKeySet

ENDPOINTS = [
    pytest.param("GET", "/api/v1/members", "members:read", id="list"),
    pytest.param("GET", "/api/v1/members/m1", "members:read", id="show"),
    pytest.param("POST", "/api/v1/members", "members:write", id="create"),
    pytest.param("PATCH", "/api/v1/members/m1", "members:write", id="patch"),
    pytest.param("DELETE", "/api/v1/members/m1", "members:write", id="delete"),
    pytest.param("POST", "/api/v1/members/m1/approve", "members:write", id="approve"),
    pytest.param("DELETE", "/api/v1/members/m1/keys/k", "members:write", id="revoke-key"),
    pytest.param("POST", "/api/v1/enroll-tokens", "tokens:write", id="enroll-token"),
    pytest.param("POST", "/api/v1/admin-tokens", "tokens:write", id="admin-token"),
]


def member_body(member_id: str = "m1", **overrides: Any) -> dict[str, Any]:
    body = {
        "id": member_id, "display_name": "Member One", "agent_url": "https://m1.example.org/agent",
        "public_url": "https://m1.example.org", "jwks": PublicKeySet([PrivateKey.generate().public]).to_jwks(),
        "location": {"region": "eu-west", "country": "FR"}, "weight": 2,
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
@pytest.mark.parametrize(
    ("auth", "status", "reason"),
    [
        pytest.param(None, 401, "missing_token", id="no-token"),
        pytest.param("Basic abc", 401, "missing_token", id="not-bearer"),
        pytest.param("Bearer fedadmin_nope", 401, "unknown_token", id="unknown"),
        pytest.param("expired", 401, "expired_token", id="expired"),
        pytest.param("other-scope", 403, "missing_scope", id="missing-scope"),
    ],
)
async def test_admin_auth_refusals(method, path, scope, auth, status, reason, broker, add_admin_token, clock):
    if auth == "expired":
        auth = f"Bearer {await add_admin_token(broker, ttl=10)}"
        clock.advance(11)
    elif auth == "other-scope":
        others = tuple(s for s in ("members:read", "members:write", "tokens:write") if s != scope)
        auth = f"Bearer {await add_admin_token(broker, scopes=others)}"
    headers = {"Authorization": auth} if auth else {}
    resp = await broker.request(method, path, headers=headers, json={})
    assert resp.status == status
    assert (await resp.json())["error"] == reason


async def test_member_crud(broker, admin_headers):
    resp = await broker.post("/api/v1/members", json=member_body(), headers=admin_headers)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["state"] == "pending" and created["weight"] == 2
    dup = await broker.post("/api/v1/members", json=member_body(), headers=admin_headers)
    assert dup.status == 409 and (await dup.json())["error"] == "member_exists"

    patch = {"weight": 0.5, "labels": {"tier": "gpu"}, "location": {"lat": 48.8, "lon": 2.3},
             "datasets": [{"id": "s3://bucket/climate/", "prefix": True}]}
    resp = await broker.patch("/api/v1/members/m1", json=patch, headers=admin_headers)
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["weight"] == 0.5 and patched["labels"] == {"tier": "gpu"}
    assert patched["display_name"] == "Member One"

    listing = await (await broker.get("/api/v1/members", headers=admin_headers)).json()
    assert [m["id"] for m in listing["members"]] == ["m1"] and listing["revision"] >= 3
    shown = await (await broker.get("/api/v1/members/m1", headers=admin_headers)).json()
    assert shown == patched and shown["canary"] is True  # canaries are on unless an admin turns them off

    resp = await broker.patch("/api/v1/members/m1", json={"canary": False}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["canary"] is False
    assert broker.app[REGISTRY].snapshot.members["m1"].record.canary is False
    assert (await broker.get("/api/v1/members/nope", headers=admin_headers)).status == 404

    resp = await broker.delete("/api/v1/members/m1", headers=admin_headers)
    assert resp.status == 200 and "m1" not in broker.app[REGISTRY].snapshot.members


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        pytest.param("POST", "/api/v1/members", b"{not json", 400, "bad_json", id="bad-json"),
        pytest.param("POST", "/api/v1/members", b"[1, 2]", 400, "bad_json", id="not-an-object"),
        pytest.param("POST", "/api/v1/members", b"", 400, "bad_json", id="empty"),
        pytest.param("POST", "/api/v1/members", b"\xff\xfe", 400, "bad_json", id="not-utf8"),
        pytest.param("POST", "/api/v1/members", {**member_body(), "colour": "red"}, 400, "invalid_body",
                     id="unknown-field"),
        pytest.param("POST", "/api/v1/members", member_body(id="Bad_Id"), 400, "invalid_body", id="bad-id"),
        pytest.param("POST", "/api/v1/members", member_body(agent_url="http://m1.example.org"), 400,
                     "insecure_url", id="http-url"),
        pytest.param("POST", "/api/v1/members", member_body(public_url="https://user:pw@h.example.org"), 400,
                     "invalid_url", id="url-with-credentials"),
        pytest.param("POST", "/api/v1/members", member_body(jwks={"keys": []}), 400, "bad_key", id="empty-jwks"),
        pytest.param("POST", "/api/v1/members", member_body(weight=-1), 400, "invalid_body", id="negative-weight"),
        pytest.param("PATCH", "/api/v1/members/m0", {"state": "active"}, 400, "invalid_body", id="patch-state"),
        pytest.param("PATCH", "/api/v1/members/m0", {"weight": None}, 400, "invalid_body", id="patch-null"),
        pytest.param("PATCH", "/api/v1/members/m0", {"canary": "sometimes"}, 400, "invalid_body", id="patch-canary"),
        pytest.param("PATCH", "/api/v1/members/m0", {"public_url": "ftp://x"}, 400, "invalid_url", id="patch-url"),
        pytest.param("POST", "/api/v1/enroll-tokens", {"name": "x", "ttl": 10**9}, 400, "invalid_body",
                     id="token-ttl-too-long"),
        pytest.param("POST", "/api/v1/enroll-tokens", {"name": ""}, 400, "invalid_body", id="token-no-name"),
        pytest.param("POST", "/api/v1/members", b"x" * (1024 * 1024), 413, "body_too_large", id="1MB-body"),
        pytest.param("POST", "/api/v1/enroll", b"x" * (1024 * 1024), 413, "body_too_large", id="1MB-enroll"),
    ],
)
async def test_malformed_input_is_4xx(method, path, body, status, reason, broker, admin_headers):
    await broker.post("/api/v1/members", json=member_body("m0"), headers=admin_headers)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**admin_headers, "Content-Type": "application/json"}
    if path == "/api/v1/enroll":
        headers["Authorization"] = "Bearer x"
    resp = await broker.request(method, path, data=raw, headers=headers)
    assert resp.status == status, await resp.text()
    assert (await resp.json())["error"] == reason


async def test_enroll_token_answer(broker, admin_headers, broker_keyring, clock):
    resp = await broker.post("/api/v1/enroll-tokens", json={"name": "site A", "ttl": 600, "auto_approve": True},
                             headers=admin_headers)
    assert resp.status == 201
    body = await resp.json()
    assert body["token"].startswith("fedenroll_") and body["token"].endswith("." + broker_keyring.signing_key.kid)
    assert body["auto_approve"] is True and body["expires_at"] == clock.now() + 600


async def _enrolled(broker, admin_headers, mint_token, do_enroll, kit):
    resp = await do_enroll(broker, kit, await mint_token(broker, admin_headers, auto_approve=True))
    assert resp.status == 201


async def test_member_key_rotation(broker, admin_headers, mint_token, do_enroll, member_kit, clock):
    kit = member_kit("rot")
    await _enrolled(broker, admin_headers, mint_token, do_enroll, kit)
    new_key = PrivateKey.generate()
    body = {"jwks": PublicKeySet([new_key.public]).to_jwks()}
    path = "/api/v1/members/rot/keys"

    # Signed by a key the member does not have yet: refused.
    raw, headers = kit.signed(path, body, audience="broker", clock=clock, key=new_key)
    resp = await broker.post(path, data=raw, headers=headers)
    assert resp.status == 401 and (await resp.json())["error"] == "unknown_key"
    # Signed by the current key, for the broker id: added.
    raw, headers = kit.signed(path, body, audience="broker", clock=clock)
    resp = await broker.post(path, data=raw, headers=headers)
    assert resp.status == 200, await resp.text()
    kids = [k["kid"] for k in (await resp.json())["jwks"]["keys"]]
    assert kids == [kit.key.kid, new_key.kid]
    assert new_key.kid in broker.app[REGISTRY].snapshot.members["rot"].keys

    # An admin revokes the old key; the last one cannot be revoked.
    resp = await broker.delete(f"/api/v1/members/rot/keys/{kit.key.kid}", headers=admin_headers)
    assert resp.status == 200
    resp = await broker.delete(f"/api/v1/members/rot/keys/{new_key.kid}", headers=admin_headers)
    assert resp.status == 409 and (await resp.json())["error"] == "last_key"
    resp = await broker.delete("/api/v1/members/rot/keys/nokey", headers=admin_headers)
    assert resp.status == 404


async def test_disabled_member_cannot_add_keys(broker, admin_headers, mint_token, do_enroll, member_kit, clock):
    kit = member_kit("quar")
    await _enrolled(broker, admin_headers, mint_token, do_enroll, kit)
    assert (await broker.post("/api/v1/members/quar/disable", headers=admin_headers)).status == 200
    path = "/api/v1/members/quar/keys"
    raw, headers = kit.signed(path, {"jwks": PublicKeySet([PrivateKey.generate().public]).to_jwks()},
                              audience="broker", clock=clock)
    resp = await broker.post(path, data=raw, headers=headers)
    assert resp.status == 403 and (await resp.json())["error"] == "member_disabled"
