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
