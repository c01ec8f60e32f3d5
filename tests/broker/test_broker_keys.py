"""Broker key rotation and member key retirement at the broker, and the poll's failure reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fedbroker.app import make_app
from fedbroker.appkeys import HEALTH, KEYRING, REGISTRY
from fedbroker.routing.facts import unroutable_reason
from fedproto.keyrotation import verify_key_set
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.status import Capacity, StatusAd
from fedproto.tokens import sign_request


def _ad(member_id: str, clock: Any, broker_kids: list[str] | None) -> StatusAd:
    now = clock.now()
    return StatusAd(member_id=member_id, instance_id="i", generation=1, issued_at=now, expires_at=now + 60,
                    healthy=True, capacity=Capacity(total=2, used=0), backend="fake", broker_kids=broker_kids)


async def test_a_new_broker_key_is_published_at_once_and_signs_once_every_member_pins_it(
        aiohttp_client: Any, tmp_path: Path, clock: Any, broker_config: Any, add_admin_token: Any, mint_token: Any, do_enroll: Any, member_kit: Any) -> None:
    keys_dir = tmp_path / "keys"
    KeyRing([PrivateKey.generate(created=1.0)]).save(keys_dir)
    client = await aiohttp_client(make_app(broker_config, clock=clock))
    headers = {"Authorization": f"Bearer {await add_admin_token(client)}"}
    for member in ("m1", "m2"):
        assert (await do_enroll(client, member_kit(member), await mint_token(client, headers, auto_approve=True))).status == 201
    await client.app[REGISTRY].refresh()
    keys = client.app[KEYRING]
    keys.keydir.min_interval = 0.0
    old = keys.signing_key.kid

    KeyRing.load(keys_dir).with_new_key(PrivateKey.generate(created=time.time())).save(keys_dir)  # keys rotate
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    new = jwks["keys"][0]["kid"]
    assert [k["kid"] for k in jwks["keys"]] == [new, old]  # published at once, newest first
    signed = (await (await client.get("/api/v1/broker-keys")).json())["signed"]
    assert verify_key_set(signed, pinned=PublicKeySet.from_jwks({"keys": [jwks["keys"][1]]}), issuer="broker",
                          clock=clock).kids == [new, old]  # a member that pins only the old key accepts it

    health = client.app[HEALTH]
    health.member("m1").record_poll(_ad("m1", clock, [new, old]))
    health.member("m2").record_poll(_ad("m2", clock, [old]))
    keys._cached = None
    assert keys.signing_key.kid == old  # m2 has not fetched the new key yet
    status = await (await client.get("/api/v1/broker-keys/status", headers=headers)).json()
    assert status["signing"] == old and status["keys"][0] == {**status["keys"][0], "kid": new, "waiting_on": ["m2"]}
    health.member("m2").record_poll(_ad("m2", clock, [old, new]))
    keys._cached = None
    assert keys.signing_key.kid == new
    assert (await client.get("/api/v1/broker-keys/status")).status == 401  # admin only
    # A member enrolled now has said nothing yet: the old key signs again at once, not after the
    # answer's cache runs out (its first poll would be signed with a key it may not hold).
    assert (await do_enroll(client, member_kit("m3"), await mint_token(client, headers, auto_approve=True))).status == 201
    await client.app[REGISTRY].refresh()
    assert keys.signing_key.kid == old


async def test_a_member_retires_its_own_old_key_but_a_key_cannot_retire_itself(
        broker: Any, admin_headers: Any, mint_token: Any, do_enroll: Any, member_kit: Any, clock: Any) -> None:
    kit = member_kit("m1")
    assert (await do_enroll(broker, kit, await mint_token(broker, admin_headers))).status == 201
    new = PrivateKey.generate()
    body, headers = kit.signed("/api/v1/members/m1/keys", {"jwks": PublicKeySet([new.public]).to_jwks()},
                               audience="broker", clock=clock)
    assert (await broker.post("/api/v1/members/m1/keys", data=body, headers=headers)).status == 200

    def delete(kid: str, key: PrivateKey) -> Any:
        path = f"/api/v1/members/m1/keys/{kid}"
        token = sign_request(key, issuer="m1", audience="broker", method="DELETE", path_qs=path, body=b"", clock=clock)
        return broker.delete(path, headers={"Authorization": f"Bearer {token}"})

    resp = await delete(kit.key.kid, kit.key)
    assert resp.status == 403 and (await resp.json())["error"] == "self_retire"
    resp = await delete(kit.key.kid, PrivateKey.generate())  # a stranger's key
    assert resp.status == 401
    resp = await delete(kit.key.kid, new)
    assert resp.status == 200, await resp.text()
    assert [k["kid"] for k in (await resp.json())["jwks"]["keys"]] == [new.kid]
    resp = await delete(new.kid, new)
    assert resp.status in (403, 409)  # never the last key, never by itself


def test_a_member_that_never_answered_shows_why() -> None:
    from types import SimpleNamespace

    from fedproto.member import MemberState

    entry = SimpleNamespace(record=SimpleNamespace(state=MemberState.active, weight=1.0))
    view = SimpleNamespace(ad=None, last_error="status answered HTTP 401, unknown_key")
    assert unroutable_reason(entry, view, None) == "no status yet: status answered HTTP 401, unknown_key"  # type: ignore[arg-type]
    assert unroutable_reason(entry, None, None) == "no status yet: never answered a poll"  # type: ignore[arg-type]


async def test_a_refused_poll_names_the_agents_reason(tmp_path: Path) -> None:
    """What an agent says when it does not pin the signing key: the status page shows it, not the logs."""
    import pytest
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from fedbroker.config import BrokerConfig
    from fedbroker.launch.memberclient import MemberCallError, MemberClient, new_session
    from fedproto.clock import SystemClock

    from member_double import MemberDouble

    async def refuse(request: web.Request) -> web.Response:
        assert request.headers["Federation-Broker-Keys"]  # every call announces the published keys
        return web.json_response({"error": "unknown_key", "message": "token is signed by an unknown key"}, status=401)

    app = web.Application()
    app.router.add_get("/api/v1/status", refuse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = BrokerConfig(base_dir=tmp_path, dev=True)
    keyring = KeyRing([PrivateKey.generate()])
    session = new_session(config)
    try:
        entry = MemberDouble("m1", broker_keys=keyring.public_set(), clock=SystemClock()).entry(
            url=str(server.make_url("")).rstrip("/"))
        with pytest.raises(MemberCallError) as exc:
            await MemberClient(config, keyring, SystemClock(), session).status(entry, timeout=5)
        assert exc.value.message == "status answered HTTP 401, unknown_key"
    finally:
        await session.close()
        await server.close()
