"""Live key rotation at the agent: its own keys (no restart) and the broker's (a signed key set it refreshes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agentkit import BROKER_ID, MEMBER_ID, FakeBackend, Signer, member_config  # noqa: F401
from fedmember import appkeys
from fedmember.app import make_app
from fedmember.brokertrust import ANNOUNCE_HEADER
from fedmember.memberkeys import KeyCommandError, retire, rotate
from fedproto.clock import SystemClock
from fedproto.keyrotation import sign_key_set
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.status import verify_status_ad
from fedproto.tokens import bearer, signer_kid, verify_request


async def _ad_kid(client: Any, signer: Signer) -> tuple[str | None, list[str] | None, KeyRing]:
    resp = await client.get("/api/v1/status", headers=signer.headers("GET", "/api/v1/status"))
    assert resp.status == 200, await resp.text()
    signed = (await resp.json())["signed"]
    ring = KeyRing.load(client.server.app[appkeys.CONFIG].keys_dir)
    ad = verify_status_ad(signed, keys=ring.public_set(), member_id=MEMBER_ID, clock=SystemClock())
    return signer_kid(signed), ad.broker_kids, ring


async def test_agent_signs_with_a_rotated_key_without_a_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    config = member_config(tmp_path)
    broker = KeyRing([PrivateKey.generate()])
    client = await aiohttp_client(make_app(config, backend=FakeBackend(), broker_keys=broker.public_set()))
    client.server.app[appkeys.MEMBER_KEYS].min_interval = 0.0
    signer = Signer(broker)
    first, broker_kids, ring = await _ad_kid(client, signer)
    assert first == ring.signing_key.kid and broker_kids == [broker.signing_key.kid]
    ring.with_new_key().save(config.keys_dir)  # what `fedmember keys rotate` writes after the broker has the key
    second, _, ring = await _ad_kid(client, signer)
    assert second == ring.signing_key.kid != first
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert PublicKeySet.from_jwks(jwks).kids == [second, first]


def _broker_stub(state: dict[str, Any]) -> web.Application:
    """The two broker routes the agent calls for its keys, checking signatures as the broker does."""
    async def add(request: web.Request) -> web.Response:
        body = await request.read()
        if state.get("refuse"):
            return web.json_response({"error": "member_disabled", "message": "no"}, status=403)
        verify_request(bearer(request.headers.get("Authorization")), keys=state["member_keys"], issuer=MEMBER_ID,
                       audience=BROKER_ID, method="POST", path_qs=request.raw_path, body=body, clock=SystemClock(), replay=None)
        state["member_keys"] = state["member_keys"].merged(PublicKeySet.from_jwks(json.loads(body)["jwks"]))
        return web.json_response({"id": MEMBER_ID})

    async def delete(request: web.Request) -> web.Response:
        token = bearer(request.headers.get("Authorization"))
        verify_request(token, keys=state["member_keys"], issuer=MEMBER_ID, audience=BROKER_ID, method="DELETE",
                       path_qs=request.raw_path, body=b"", clock=SystemClock(), replay=None)
        assert signer_kid(token) != request.match_info["kid"]  # never signed by the key it retires
        state["member_keys"] = state["member_keys"].without(request.match_info["kid"])
        return web.json_response({"id": MEMBER_ID})

    async def key_set(request: web.Request) -> web.Response:
        ring: KeyRing = state["broker_ring"]
        signed = sign_key_set(state.get("signer") or ring.keys[0], issuer=BROKER_ID, keys=ring.public_set(), clock=SystemClock())
        state["fetches"] = state.get("fetches", 0) + 1
        return web.json_response({"signed": signed})

    app = web.Application()
    app.router.add_post("/api/v1/members/{id}/keys", add)
    app.router.add_delete("/api/v1/members/{id}/keys/{kid}", delete)
    app.router.add_get("/api/v1/broker-keys", key_set)
    return app


async def test_fedmember_keys_rotate_then_retire_through_the_broker(aiohttp_server: Any, tmp_path: Path) -> None:
    state: dict[str, Any] = {}
    server = await aiohttp_server(_broker_stub(state))
    config = member_config(tmp_path, dev=True)
    config = config.model_copy(update={"broker": config.broker.model_copy(update={"url": str(server.make_url("")).rstrip("/")})})
    old = config.load_keys().signing_key
    state["member_keys"] = PublicKeySet([old.public])

    state["refuse"] = True
    with pytest.raises(KeyCommandError, match="HTTP 403"):
        await rotate(config)
    assert [k.kid for k in config.load_keys().keys] == [old.kid]  # nothing written when the broker refused
    state["refuse"] = False

    new = await rotate(config)
    assert [k.kid for k in config.load_keys().keys] == [old.kid, new.kid]
    assert state["member_keys"].kids == [old.kid, new.kid]
    with pytest.raises(KeyCommandError, match="signing"):
        await retire(config, new.kid)
    assert await retire(config) == [old.kid]
    assert [k.kid for k in config.load_keys().keys] == [new.kid]
    assert state["member_keys"].kids == [new.kid]


async def test_agent_refreshes_the_broker_key_set_and_trusts_the_new_key(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    old_ring = KeyRing([PrivateKey.generate(created=1.0)])
    state: dict[str, Any] = {"broker_ring": old_ring}
    broker = await aiohttp_server(_broker_stub(state))
    config = member_config(tmp_path)
    config = config.model_copy(update={"broker": config.broker.model_copy(update={"url": str(broker.make_url("")).rstrip("/")})})
    config.broker_jwks_path.write_text(json.dumps(old_ring.public_set().to_jwks()))
    client = await aiohttp_client(make_app(config, backend=FakeBackend()))
    trust = client.server.app[appkeys.BROKER_KEYS]

    new_ring = old_ring.with_new_key()
    state["broker_ring"] = new_ring  # the broker published a new key but still signs with the old one
    new_signer = Signer(KeyRing([new_ring.signing_key]))
    resp = await client.get("/api/v1/status", headers=new_signer.headers("GET", "/api/v1/status"))
    assert resp.status == 401 and (await resp.json())["error"] == "unknown_key"

    old_signer = Signer(old_ring)
    announce = {ANNOUNCE_HEADER: ",".join(new_ring.public_set().kids)}
    resp = await client.get("/api/v1/status", headers={**old_signer.headers("GET", "/api/v1/status"), **announce})
    assert resp.status == 200
    for _ in range(100):  # the announcement woke the refresh loop at once (keys_refresh is 300 s)
        if trust.kids != old_ring.public_set().kids:
            break
        await asyncio.sleep(0.05)
    assert trust.kids == new_ring.public_set().kids
    assert PublicKeySet.from_jwks(json.loads(config.broker_jwks_path.read_text())).kids == trust.kids
    resp = await client.get("/api/v1/status", headers=new_signer.headers("GET", "/api/v1/status"))
    assert resp.status == 200
    _, broker_kids, _ = await _ad_kid(client, old_signer)
    assert broker_kids == new_ring.public_set().kids  # the ad tells the broker the new key is pinned

    # A set signed by a key the member does not pin is refused, and the pinned set is kept.
    state["signer"] = PrivateKey.generate()
    async with aiohttp.ClientSession() as session:
        assert await trust.refresh(session) is False
    assert "unknown key" in (trust.last_error or "") and trust.kids == new_ring.public_set().kids
