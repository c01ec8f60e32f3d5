"""The full token attack list over HTTP, against a running member agent (every signed route)
and a running broker (the member-signed routes: enrollment and key rotation).

Every attack is refused with 401 and its reason, changes nothing, and the legitimate request
made after all of them still succeeds (so no attack consumed a token or a key slot).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from fedbroker.demo.run import DemoFederation
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet

from attackkit import ATTACK_IDS, ATTACKS, Maker, Signer

pytestmark = pytest.mark.slow
TIMEOUT = 10


def _member(fed: DemoFederation) -> tuple[str, str, Path]:
    agent = next(iter(fed.members.values()))
    return agent.member_id, agent.agent_url, agent.directory


def _broker_signer(fed: DemoFederation) -> Signer:
    member_id, _, _ = _member(fed)
    ring = KeyRing.load_or_create(fed.broker_config.parent / "keys")
    return Signer(ring.signing_key, issuer="demo", audience=member_id)


def _send(method: str, url: str, path: str, body: bytes, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body:
        headers["Content-Type"] = "application/json"
    return requests.request(method, url + path, data=body or None, headers=headers, timeout=TIMEOUT)


def refused_as(resp: requests.Response, reason: str) -> bool:
    """401 with the attack's reason; an oversize token may already be cut off by the HTTP
    server's header-size limit (400, before any token code runs): refused either way."""
    if reason == "oversize_token" and resp.status_code == 400:
        return True
    return resp.status_code == 401 and resp.json().get("error") == reason


def _member_routes(fed: DemoFederation) -> list[tuple[str, str, bytes]]:
    hello = next(r for r in fed.repos if r.name == "hello")
    launch = json.dumps({"provider": "git", "spec": hello.spec(), "launch_id": "attack-launch-0001"}).encode()
    return [("GET", "/api/v1/status", b""), ("POST", "/api/v1/launches", launch), ("POST", "/api/v1/builds", launch),
            ("DELETE", "/api/v1/launches/attack-launch-0001", b"")]


ROUTE_IDS = ["status", "launches", "builds", "delete"]


@pytest.mark.parametrize("route", range(4), ids=ROUTE_IDS)
@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
def test_member_refuses_attack(small_federation: DemoFederation, attack: tuple[str, Maker, str], route: int) -> None:
    _, agent_url, _ = _member(small_federation)
    method, path, body = _member_routes(small_federation)[route]
    _name, make, reason = attack
    resp = _send(method, agent_url, path, body, make(_broker_signer(small_federation), method, path, body))
    assert refused_as(resp, reason), (resp.status_code, resp.text[:300])


def test_member_refuses_replay_and_accepts_fresh(small_federation: DemoFederation) -> None:
    _, agent_url, _ = _member(small_federation)
    signer = _broker_signer(small_federation)
    token = signer.token("GET", "/api/v1/status", b"")
    assert _send("GET", agent_url, "/api/v1/status", b"", token).status_code == 200
    again = _send("GET", agent_url, "/api/v1/status", b"", token)
    assert again.status_code == 401 and again.json()["error"] == "replayed"
    missing = _send("DELETE", agent_url, "/api/v1/launches/attack-launch-0001", b"",
                    signer.token("DELETE", "/api/v1/launches/attack-launch-0001", b""))
    assert missing.status_code == 404  # past authentication: the launch does not exist


def _admin(fed: DemoFederation) -> dict[str, str]:
    return {"Authorization": f"Bearer {fed.admin_token}"}


def _enroll_body(token: str, key: PrivateKey, member_id: str) -> bytes:
    return json.dumps({"token": token, "member_id": member_id, "display_name": member_id,
                       "agent_url": f"https://{member_id}.example.org/agent",
                       "public_url": f"https://{member_id}.example.org/",
                       "jwks": PublicKeySet([key.public]).to_jwks()}).encode()


def test_broker_enrollment_refuses_every_attack(small_federation: DemoFederation) -> None:
    fed = small_federation
    made = requests.post(f"{fed.broker_url}/api/v1/enroll-tokens", json={"name": "attacked"}, headers=_admin(fed),
                         timeout=TIMEOUT)
    assert made.status_code == 201
    token = made.json()["token"]
    key, member_id = PrivateKey.generate(), "newcomer"
    signer = Signer(key, issuer=member_id, audience=EnrollmentToken.parse(token).broker_kid)
    body, path = _enroll_body(token, key, member_id), "/api/v1/enroll"
    refused: dict[str, Any] = {}
    for name, make, reason in ATTACKS:
        resp = _send("POST", fed.broker_url, path, body, make(signer, "POST", path, body))
        if not refused_as(resp, reason):
            refused[name] = (resp.status_code, resp.text[:200])
    assert refused == {}
    members = requests.get(f"{fed.broker_url}/api/v1/members", headers=_admin(fed), timeout=TIMEOUT).json()["members"]
    assert member_id not in {m["id"] for m in members}
    ok = _send("POST", fed.broker_url, path, body, signer.token("POST", path, body))
    assert ok.status_code == 201, ok.text  # the one-time token was not used up by any attack


def test_broker_key_rotation_refuses_every_attack(small_federation: DemoFederation) -> None:
    fed = small_federation
    member_id, _, directory = _member(fed)
    current = KeyRing.load_or_create(directory / "keys").signing_key
    signer = Signer(current, issuer=member_id, audience="demo")
    path = f"/api/v1/members/{member_id}/keys"
    body = json.dumps({"jwks": PublicKeySet([PrivateKey.generate().public]).to_jwks()}).encode()
    wrong: dict[str, Any] = {}
    for name, make, reason in ATTACKS:
        resp = _send("POST", fed.broker_url, path, body, make(signer, "POST", path, body))
        if not refused_as(resp, reason):
            wrong[name] = (resp.status_code, resp.text[:200])
    assert wrong == {}
    record = requests.get(f"{fed.broker_url}/api/v1/members/{member_id}", headers=_admin(fed), timeout=TIMEOUT).json()
    assert len(record["jwks"]["keys"]) == 1
