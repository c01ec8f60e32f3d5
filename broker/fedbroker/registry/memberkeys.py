"""Member key rotation: a member adds keys, and retires old ones, with requests signed by a current key; an admin may revoke one."""

from __future__ import annotations

from typing import Any

from fedproto.clock import Clock
from fedproto.errors import Conflict, Forbidden, NotFound
from fedproto.keys import PublicKeySet
from fedproto.member import MemberRecord, MemberState
from fedproto.replay import ReplayCache
from fedproto.tokens import bearer, signer_kid, verify_request
from fedproto.wire import WireModel

from ..jsonbody import parse_json
from .adminauth import AdminPrincipal
from .service import Registry


class KeysAdd(WireModel):
    """``POST /api/v1/members/{id}/keys``: the new public keys, as a JWKS."""

    jwks: dict[str, Any]


class MemberKeys:
    """Adds and revokes members' verification keys, each change audited."""

    def __init__(self, registry: Registry, broker_id: str, clock: Clock, replay: ReplayCache) -> None:
        self.registry = registry
        self.broker_id = broker_id
        self.clock = clock
        self.replay = replay

    async def add(
        self, member_id: str, *, authorization: str | None, path_qs: str, body: bytes
    ) -> MemberRecord:
        """Add the body's keys, if the request is signed by one of the member's current keys."""
        token = bearer(authorization)
        new_keys = PublicKeySet.from_jwks(parse_json(body, KeysAdd, from_member=True).jwks)
        async with self.registry.change() as tx:
            record = await tx.require_member(member_id)
            current = PublicKeySet.from_jwks(record.jwks)
            verify_request(
                token, keys=current, issuer=member_id, audience=self.broker_id, method="POST",
                path_qs=path_qs, body=body, clock=self.clock, replay=self.replay,
            )
            if record.state is MemberState.disabled:
                # A quarantined member may be compromised: it must not entrench new keys.
                raise Forbidden(f"member {member_id!r} is disabled; an admin must approve it first",
                                reason="member_disabled")
            merged = current.merged(new_keys)
            added = [kid for kid in merged.kids if kid not in current]
            updated = record.model_copy(update={"jwks": merged.to_jwks(), "updated_at": tx.now})
            if added:
                await tx.update_member(updated)
                signer = signer_kid(token)  # verified above
                await tx.audit(f"member:{member_id}", "member.key_add", member_id,
                               {"added": added, "signed_by": signer})
        return updated

    async def retire_own(self, member_id: str, kid: str, *, authorization: str | None, path_qs: str) -> MemberRecord:
        """The member drops one of its own keys, in a request signed by another of its keys."""
        token = bearer(authorization)
        async with self.registry.change() as tx:
            record = await tx.require_member(member_id)
            current = PublicKeySet.from_jwks(record.jwks)
            verify_request(
                token, keys=current, issuer=member_id, audience=self.broker_id, method="DELETE",
                path_qs=path_qs, body=b"", clock=self.clock, replay=self.replay,
            )
            if signer_kid(token) == kid:
                # A stolen old key must not be able to lock out the key that replaced it.
                raise Forbidden("a key cannot retire itself: sign with the member's newer key",
                                reason="self_retire")
            updated = await self._drop(tx, record, current, kid)
            await tx.audit(f"member:{member_id}", "member.key_retire", member_id, {"kid": kid})
        return updated

    async def revoke(self, admin: AdminPrincipal, member_id: str, kid: str) -> MemberRecord:
        """Remove one key; the last key is refused (the member could never sign again)."""
        async with self.registry.change() as tx:
            record = await tx.require_member(member_id)
            current = PublicKeySet.from_jwks(record.jwks)
            updated = await self._drop(tx, record, current, kid)
            await tx.audit(admin.actor, "member.key_revoke", member_id, {"kid": kid})
        return updated

    @staticmethod
    async def _drop(tx: Any, record: MemberRecord, current: PublicKeySet, kid: str) -> MemberRecord:
        member_id = record.id
        if kid not in current:
            raise NotFound(f"member {member_id!r} has no key {kid!r}", reason="unknown_key")
        if len(current) == 1:
            raise Conflict(
                f"{kid!r} is the last key of member {member_id!r}; add its replacement first",
                reason="last_key",
            )
        updated = record.model_copy(update={"jwks": current.without(kid).to_jwks(), "updated_at": tx.now})
        await tx.update_member(updated)
        return updated
