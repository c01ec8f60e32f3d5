"""The member state machine: every (action, state) pair, in the pure function and through the admin API."""

from __future__ import annotations

import pytest

from fedbroker.appkeys import REGISTRY
from fedproto.errors import Conflict, http_status
from fedbroker.registry.lifecycle import Action, next_state
from fedproto.keys import PrivateKey, PublicKeySet
from fedproto.member import MemberRecord, MemberState

S = MemberState
LEGAL = {
    (Action.approve, S.pending): S.active,
    (Action.approve, S.disabled): S.active,
    (Action.drain, S.active): S.draining,
    (Action.undrain, S.draining): S.active,
    (Action.disable, S.pending): S.disabled,
    (Action.disable, S.active): S.disabled,
    (Action.disable, S.draining): S.disabled,
    (Action.disable, S.retired): S.disabled,
    (Action.retire, S.draining): S.retired,
    (Action.retire, S.pending): S.retired,
    (Action.retire, S.disabled): S.retired,
}
ALL = [pytest.param(a, s, id=f"{a.value}-from-{s.value}") for a in Action for s in MemberState]


@pytest.mark.parametrize(("action", "state"), ALL)
def test_next_state(action: Action, state: MemberState) -> None:
    if (action, state) in LEGAL:
        assert next_state(state, action) is LEGAL[(action, state)]
    else:
        with pytest.raises(Conflict) as info:
            next_state(state, action)
        assert info.value.reason == "illegal_transition" and http_status(info.value) == 409  # a domain error; the web answers 409
        assert state.value in info.value.message and action.value in info.value.message


async def _member_in(client, state: MemberState, member_id: str = "m1") -> None:
    now = 1_800_000_000.0
    record = MemberRecord(
        id=member_id, display_name="M", agent_url="https://m.example.org", public_url="https://m.example.org",
        state=state, jwks=PublicKeySet([PrivateKey.generate().public]).to_jwks(), created_at=now, updated_at=now,
    )
    async with client.app[REGISTRY].change() as tx:
        await tx.insert_member(record)


HTTP = [pytest.param(a, s, id=f"{a.value}-from-{s.value}") for a in Action for s in MemberState]


@pytest.mark.parametrize(("action", "state"), HTTP)
async def test_transition_through_api(action: Action, state: MemberState, broker, admin_headers) -> None:
    await _member_in(broker, state)
    if action is Action.retire:
        resp = await broker.delete("/api/v1/members/m1", headers=admin_headers)
    else:
        resp = await broker.post(f"/api/v1/members/m1/{action.value}", headers=admin_headers)
    body = await resp.json()
    members = broker.app[REGISTRY].snapshot.members
    if (action, state) not in LEGAL:
        assert resp.status == 409 and body["error"] == "illegal_transition", body
        assert members["m1"].record.state is state
    elif action is Action.retire:
        assert resp.status == 200 and body == {"id": "m1", "state": "retired", "removed": True}
        assert "m1" not in members
    else:
        assert resp.status == 200 and body["state"] == LEGAL[(action, state)].value
        assert members["m1"].record.state is LEGAL[(action, state)]


async def test_unknown_member_is_404(broker, admin_headers) -> None:
    resp = await broker.post("/api/v1/members/nobody/approve", headers=admin_headers)
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_member"
