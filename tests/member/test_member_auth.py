"""Every way a request can fail authentication, and the routes that need none."""

from __future__ import annotations

from typing import Any

import pytest
from agentkit import BROKER_ID, MEMBER_ID, Signer

from fedproto.clock import FakeClock
from fedproto.keys import KeyRing, PrivateKey

PATH = "/api/v1/status"


def _forged(signer: Signer) -> dict[str, str]:
    token = signer.token("GET", PATH)
    head, payload, sig = token.split(".")
    return {"Authorization": f"Bearer {head}.{payload}.{sig[:-4]}AAAA"}


CASES: list[tuple[str, Any, str]] = [
    ("missing", lambda s: {}, "missing_token"),
    ("not bearer", lambda s: {"Authorization": "Basic abc"}, "missing_token"),
    ("garbage", lambda s: {"Authorization": "Bearer not.a.jwt"}, "malformed_token"),
    ("forged", _forged, "bad_signature"),
    ("unknown key", lambda s: s.headers("GET", PATH, key=PrivateKey.generate()), "unknown_key"),
    ("expired", lambda s: s.headers("GET", PATH, clock=FakeClock(s.clock.now() - 600)), "expired"),
    ("future", lambda s: s.headers("GET", PATH, clock=FakeClock(s.clock.now() + 600)), "not_yet_valid"),
    ("wrong audience", lambda s: s.headers("GET", PATH, audience="site-b"), "wrong_audience"),
    ("wrong issuer", lambda s: s.headers("GET", PATH, issuer="other-broker"), "wrong_issuer"),
    ("wrong method", lambda s: s.headers("POST", PATH), "wrong_method"),
    ("wrong path", lambda s: s.headers("GET", "/api/v1/status?x=1"), "wrong_path"),
    ("wrong body", lambda s: s.headers("GET", PATH, b"{}"), "wrong_body"),
]


@pytest.mark.parametrize(("make_headers", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_rejected_with_reason(agent: Any, signer: Signer, make_headers: Any, reason: str) -> None:
    resp = await agent.get(PATH, headers=make_headers(signer))
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == reason and body["message"]
    metrics = await (await agent.get("/metrics")).text()
    assert f'fedmember_auth_failures_total{{reason="{reason}"}} 1.0' in metrics


async def test_replayed_token_is_refused(agent: Any, signer: Signer) -> None:
    headers = signer.headers("GET", PATH)
    assert (await agent.get(PATH, headers=headers)).status == 200
    resp = await agent.get(PATH, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"] == "replayed"


async def test_oversize_body_is_413_before_verifying(agent: Any, signer: Signer) -> None:
    body = b"x" * (64 * 1024 + 1)
    resp = await agent.post("/api/v1/launches", data=body, headers=signer.headers("POST", "/api/v1/launches", body))
    assert resp.status == 413
    assert (await resp.json())["error"] == "body_too_large"


async def test_rotated_broker_keys_both_verify(aiohttp_client: Any, config: Any, fake_backend: Any, broker_ring: KeyRing) -> None:
    from fedmember.app import make_app

    rotated = broker_ring.rotated()
    client = await aiohttp_client(make_app(config, backend=fake_backend, broker_keys=rotated.public_set()))
    for key in rotated.keys:
        signer = Signer(rotated)
        assert (await client.get(PATH, headers=signer.headers("GET", PATH, key=key))).status == 200


async def test_not_enrolled_answers_401(aiohttp_client: Any, config: Any, fake_backend: Any) -> None:
    from fedmember.app import make_app

    client = await aiohttp_client(make_app(config, backend=fake_backend))  # no broker.jwks.json
    resp = await client.get(PATH, headers=Signer(KeyRing([PrivateKey.generate()])).headers("GET", PATH))
    assert resp.status == 401
    assert (await resp.json())["error"] == "not_enrolled"


@pytest.mark.parametrize("path", ["/health", "/.well-known/jwks.json", "/metrics"])
async def test_public_routes_need_no_token(agent: Any, path: str) -> None:
    assert (await agent.get(path)).status == 200


async def test_every_other_route_needs_a_token(agent: Any) -> None:
    for method, path in [("GET", PATH), ("POST", "/api/v1/launches"), ("POST", "/api/v1/builds"), ("DELETE", "/api/v1/launches/x")]:
        resp = await agent.request(method, path)
        assert resp.status == 401, (method, path)


def test_ids_are_the_fixture_ids() -> None:
    assert MEMBER_ID != BROKER_ID
