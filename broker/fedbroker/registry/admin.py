"""Admin operations on the registry: pre-register, edit, move through the lifecycle, remove; enrollment tokens.

Each operation is one transaction that also writes its audit entry, so an
acknowledged change and its audit record are committed together or not at all.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fedproto.datasets import Dataset
from fedproto.enrollment import EnrollmentToken
from fedproto.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedproto.keys import KeyRing, PublicKeySet
from fedproto.location import Location
from fedproto.member import MEMBER_ID_PATTERN, MemberRecord, MemberState
from fedproto.wire import WireModel

from ..config import BrokerConfig
from .adminauth import AdminPrincipal, new_admin_secret
from .lifecycle import Action, next_state
from .service import Registry
from .store import AdminTokenRow, EnrollTokenRow
from .urlpolicy import check_agent_url

MAX_ENROLL_TOKEN_TTL = 30 * 86400.0


class MemberCreate(WireModel):
    """``POST /api/v1/members``: an admin pre-registers a member with its public keys."""

    id: str = Field(pattern=MEMBER_ID_PATTERN)
    display_name: str = Field(min_length=1, max_length=200)
    agent_url: str = Field(max_length=2048)
    public_url: str = Field(max_length=2048)
    jwks: dict[str, Any]
    weight: float = Field(default=1.0, ge=0, le=1000)
    location: Location = Field(default_factory=Location)
    datasets: list[Dataset] = Field(default_factory=list, max_length=10_000)
    labels: dict[str, str] = Field(default_factory=dict)
    canary: bool = Field(default=True, description="Whether the broker runs canary launches on this member.")


class MemberPatch(WireModel):
    """``PATCH /api/v1/members/{id}``: the fields an admin may change (not state, not keys)."""

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    agent_url: str | None = Field(default=None, max_length=2048)
    public_url: str | None = Field(default=None, max_length=2048)
    weight: float | None = Field(default=None, ge=0, le=1000)
    location: Location | None = None
    datasets: list[Dataset] | None = Field(default=None, max_length=10_000)
    labels: dict[str, str] | None = None
    canary: bool | None = None
    max_capacity: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="The most capacity routing believes from this member's ads (health.max_member_capacity if unset).")


class EnrollTokenCreate(WireModel):
    """``POST /api/v1/enroll-tokens``."""

    name: str = Field(min_length=1, max_length=200, description="Who or what the token is for.")
    ttl: float = Field(default=86400.0, gt=0, le=MAX_ENROLL_TOKEN_TTL, description="Seconds until it expires.")
    auto_approve: bool = Field(default=False, description="The member starts active instead of pending.")


class AdminTokenCreate(WireModel):
    """``POST /api/v1/admin-tokens``."""

    name: str = Field(min_length=1, max_length=200, description="Who the token is for (the audit actor).")
    scopes: list[Literal["members:read", "members:write", "tokens:write"]] = Field(
        min_length=1, max_length=3, description="What it may do; at most the caller's own scopes."
    )
    ttl: float = Field(default=90 * 86400.0, gt=0, le=3650 * 86400.0, description="Seconds until it expires.")


def _audit_changes(changes: dict[str, Any]) -> dict[str, Any]:
    # Dataset lists can be long; the audit entry records how many, not all of them.
    return {k: (f"{len(v)} datasets" if k == "datasets" else v) for k, v in changes.items()}


class AdminService:
    """What admins can do to the registry, each step audited."""

    def __init__(self, registry: Registry, config: BrokerConfig, keyring: KeyRing) -> None:
        self.registry = registry
        self.config = config
        self.keyring = keyring

    async def _url(self, url: str, field: str) -> str:
        # The broker calls both (the agent URL always, the public URL for canary checks): neither
        # may point inside its own network (SSRF).
        return await check_agent_url(url, self.config, field=field)

    async def create_member(self, admin: AdminPrincipal, body: MemberCreate) -> MemberRecord:
        keys = PublicKeySet.from_jwks(body.jwks)
        agent_url, public_url = await self._url(body.agent_url, "agent_url"), await self._url(body.public_url, "public_url")
        async with self.registry.change() as tx:
            if await tx.member(body.id) is not None:
                raise Conflict(f"a member with id {body.id!r} already exists", reason="member_exists")
            record = MemberRecord(
                **body.model_dump(exclude={"jwks", "agent_url", "public_url"}),
                agent_url=agent_url, public_url=public_url, jwks=keys.to_jwks(),
                state=MemberState.pending, created_at=tx.now, updated_at=tx.now,
            )
            await tx.insert_member(record)
            await tx.audit(admin.actor, "member.create", body.id, {"state": "pending", "kids": keys.kids})
        return record

    async def update_member(self, admin: AdminPrincipal, member_id: str, patch: MemberPatch) -> MemberRecord:
        changes = {k: v for k, v in patch.model_dump(exclude_unset=True).items()}
        nulls = sorted(k for k, v in changes.items() if v is None)
        if nulls:
            raise InvalidRequest(f"{', '.join(nulls)}: cannot be null", reason="invalid_body")
        for field in ("agent_url", "public_url"):
            if field in changes:
                changes[field] = await self._url(changes[field], field)
        async with self.registry.change() as tx:
            record = await tx.require_member(member_id)
            updated = MemberRecord.model_validate(
                {**record.model_dump(mode="json"), **changes, "updated_at": tx.now}
            )
            await tx.update_member(updated)
            await tx.audit(admin.actor, "member.update", member_id, {"changed": _audit_changes(changes)})
        return updated

    async def transition(self, admin: AdminPrincipal, member_id: str, action: Action) -> MemberRecord:
        async with self.registry.change() as tx:
            record = await tx.require_member(member_id)
            target = next_state(record.state, action)
            updated = record.model_copy(update={"state": target, "updated_at": tx.now})
            await tx.update_member(updated)
            await tx.audit(
                admin.actor, f"member.{action.value}", member_id,
                {"from": record.state.value, "to": target.value},
            )
        return updated

    async def remove(self, admin: AdminPrincipal, member_id: str) -> dict[str, Any]:
        """Retire the member (the lifecycle decides whether it may) and delete its record."""
        async with self.registry.change() as tx:
            record = await tx.require_member(member_id)
            target = next_state(record.state, Action.retire, verb="remove")
            await tx.delete_member(member_id)
            await tx.audit(
                admin.actor, "member.remove", member_id,
                {"from": record.state.value, "to": target.value, "display_name": record.display_name,
                 "kids": PublicKeySet.from_jwks(record.jwks).kids},
            )
        return {"id": member_id, "state": target.value, "removed": True}

    async def create_enroll_token(
        self, admin: AdminPrincipal, body: EnrollTokenCreate
    ) -> tuple[EnrollmentToken, EnrollTokenRow]:
        """A new one-time token; its secret is returned here once and only its hash is kept.

        It expires no later than its creator, and ``auto_approve`` (a member straight into
        ``active``) needs ``members:write``, the scope that approves members by hand.
        """
        if body.auto_approve and "members:write" not in admin.scopes:
            raise Forbidden("auto_approve admits a member without review: it needs the scope members:write",
                            reason="scope_escalation")
        token = EnrollmentToken.new(self.keyring.signing_key.kid)
        async with self.registry.change() as tx:
            row = await tx.add_enroll_token(
                secret=token.secret, name=body.name, broker_kid=token.broker_kid,
                auto_approve=body.auto_approve, ttl=min(body.ttl, admin.expires_at - tx.now), created_by=admin.actor,
            )
            await tx.audit(
                admin.actor, "enroll_token.create", row.id,
                {"name": body.name, "auto_approve": body.auto_approve, "expires_at": row.expires_at},
            )
        return token, row

    async def create_admin_token(self, admin: AdminPrincipal, body: AdminTokenCreate) -> tuple[str, AdminTokenRow]:
        """A new admin token, shown once; it can hold no scope its creator lacks (no escalation)."""
        extra = set(body.scopes) - admin.scopes
        if extra:
            raise Forbidden(f"a token cannot grant scopes its creator lacks: {', '.join(sorted(extra))}",
                            reason="scope_escalation")
        secret = new_admin_secret()
        async with self.registry.change() as tx:
            # No longer than its creator: a short-lived token must not mint a long-lived one.
            row = await tx.add_admin_token(secret=secret, name=body.name, scopes=sorted(set(body.scopes)), ttl=body.ttl,
                                           created_by=admin.actor, expires_at=admin.expires_at)
            await tx.audit(admin.actor, "admin_token.create", row.id,
                           {"name": row.name, "scopes": sorted(row.scopes), "expires_at": row.expires_at})
        return secret, row

    async def list_admin_tokens(self) -> list[AdminTokenRow]:
        async with self.registry.store.read() as tx:
            return await tx.admin_tokens()

    async def revoke_admin_token(self, admin: AdminPrincipal, token_id: str) -> AdminTokenRow:
        """Revoke a token at once, on every replica. Only one holding no scope the caller lacks:
        a narrow token must not lock out a broader one (the init token, say)."""
        async with self.registry.change() as tx:
            row = await tx.admin_token_by_id(token_id)
            if row is None:
                raise NotFound(f"no admin token with id {token_id!r}", reason="unknown_token")
            extra = row.scopes - admin.scopes
            if extra:
                raise Forbidden(f"cannot revoke a token holding scopes the caller lacks: {', '.join(sorted(extra))}",
                                reason="scope_escalation")
            if row.revoked_at is None:
                await tx.revoke_admin_token(token_id)
                await tx.audit(admin.actor, "admin_token.revoke", token_id, {"name": row.name})
            revoked = await tx.admin_token_by_id(token_id)
        assert revoked is not None
        return revoked

    async def list_enroll_tokens(self) -> list[EnrollTokenRow]:
        async with self.registry.store.read() as tx:
            return await tx.enroll_tokens()

    async def revoke_enroll_token(self, admin: AdminPrincipal, token_id: str) -> EnrollTokenRow:
        """Revoke an unused enrollment token; a used one is reported as it is (its member stays)."""
        async with self.registry.change() as tx:
            before = await tx.enroll_token_by_id(token_id)
            row = await tx.revoke_enroll_token(token_id)
            if row is None:
                raise NotFound(f"no enrollment token with id {token_id!r}", reason="unknown_token")
            if before is not None and before.revoked_at is None and row.revoked_at is not None:
                await tx.audit(admin.actor, "enroll_token.revoke", token_id, {"name": row.name})
        return row


def enroll_token_view(row: EnrollTokenRow) -> dict[str, Any]:
    """What the admin API shows of an enrollment token (never the secret, which is not stored)."""
    return {"id": row.id, "name": row.name, "broker_kid": row.broker_kid, "auto_approve": row.auto_approve,
            "created_at": row.created_at, "expires_at": row.expires_at, "used_at": row.used_at,
            "used_by": row.used_by, "revoked_at": row.revoked_at}
