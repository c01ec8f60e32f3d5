"""Dataset declarations and dataset owners: who may say which members hold and serve a dataset.

Two kinds of callers declare datasets (see ``datasetpolicy.py`` for what a declaration means):

* an admin (``members:write``), for any dataset id;
* a data provider, with requests signed by its dataset-owner key (registered here by an
  admin), only for ids under the prefixes the admin gave it. Its requests are checked like
  members' (signature, audience = this broker, method, path, body, expiry, replay).

Each change is one transaction with its audit entry, and bumps the registry revision so every
replica's routing sees it at the next snapshot refresh.
"""

from __future__ import annotations

from typing import Annotated, Any

import jwt
from pydantic import Field

from fedproto.clock import Clock
from fedproto.datasets import normalise_dataset_id
from fedproto.errors import Forbidden, InvalidRequest, KeyMaterialError, NotFound, Unauthenticated
from fedproto.keys import PublicKeySet
from fedproto.member import MEMBER_ID_PATTERN
from fedproto.replay import ReplayCache
from fedproto.tokens import verify_request
from fedproto.wire import WireModel

from ..config import BrokerConfig
from .datasetpolicy import DatasetRule, normalised_rule
from .service import Registry
from .store import DatasetOwnerRow

MemberId = Annotated[str, Field(pattern=MEMBER_ID_PATTERN)]


class DatasetDeclaration(WireModel):
    """``POST /api/v1/datasets``: declare (or replace) who holds and who may serve a dataset."""

    id: str = Field(min_length=1, max_length=512, description="DOI, URL or other dataset id (or a prefix of them).")
    prefix: bool = Field(default=False, description="The declaration covers every dataset id starting with `id`.")
    holders: list[MemberId] = Field(default_factory=list, max_length=1000,
                                    description="Members that store it (routing prefers them).")
    servers: list[MemberId] | None = Field(
        default=None, max_length=1000,
        description="Members allowed to serve launches that need it; null: any member.")
    size_bytes: int | None = Field(default=None, ge=0, description="Its size, when known (prices fetching it).")


class DatasetOwnerCreate(WireModel):
    """``POST /api/v1/dataset-owners``: register a data provider's key and what it speaks for."""

    id: str = Field(pattern=MEMBER_ID_PATTERN, description="The owner's id: the `iss` of its signed requests.")
    display_name: str = Field(min_length=1, max_length=200)
    jwks: dict[str, Any] = Field(description="The owner's public keys (JWKS, Ed25519).")
    prefixes: list[str] = Field(min_length=1, max_length=100,
                                description="Dataset id prefixes it may declare, e.g. `10.5281/zenodo.`.")


def rule_view(rule: DatasetRule) -> dict[str, Any]:
    """A declaration as the API shows it."""
    return {"id": rule.id, "prefix": rule.prefix, "holders": sorted(rule.holders),
            "servers": None if rule.servers is None else sorted(rule.servers), "size_bytes": rule.size_bytes,
            "declared_by": rule.declared_by}


def _covered(owner: DatasetOwnerRow, rule_id: str) -> bool:
    return any(rule_id.startswith(p) for p in owner.prefixes)


class DatasetAdmin:
    """Declarations by admins or owners, and the owners themselves."""

    def __init__(self, registry: Registry, config: BrokerConfig, clock: Clock, replay: ReplayCache) -> None:
        self.registry = registry
        self.config = config
        self.clock = clock
        self.replay = replay

    async def owner_of(self, token: str, *, method: str, path_qs: str, body: bytes) -> DatasetOwnerRow:
        """The dataset owner whose key signed ``token`` for this exact request, or 401."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            raise Unauthenticated("not an admin token or a signed owner request", reason="malformed_token") from None
        async with self.registry.store.read() as tx:
            owner = await tx.dataset_owner(str(issuer)) if isinstance(issuer, str) else None
        if owner is None:
            raise Unauthenticated("unknown dataset owner", reason="unknown_owner")
        verify_request(token, keys=PublicKeySet.from_jwks(owner.jwks), issuer=owner.id,
                       audience=self.config.broker_id, method=method, path_qs=path_qs, body=body,
                       clock=self.clock, replay=self.replay)
        return owner

    async def declare(self, actor: str, body: DatasetDeclaration, owner: DatasetOwnerRow | None) -> DatasetRule:
        rule = normalised_rule(body.id, prefix=body.prefix, holders=body.holders, servers=body.servers,
                               size_bytes=body.size_bytes, declared_by=actor)
        if owner is not None and not _covered(owner, rule.id):
            raise Forbidden(f"dataset owner {owner.id} may declare only ids under {', '.join(owner.prefixes)}",
                            reason="not_your_dataset")
        async with self.registry.change() as tx:
            known = {m.id for m in await tx.members()}
            unknown = sorted((rule.holders | (rule.servers or frozenset())) - known)
            if unknown:
                raise InvalidRequest(f"no members with ids: {', '.join(unknown)}", reason="unknown_member")
            created = await tx.put_dataset_rule(rule)
            await tx.audit(actor, "dataset.declare" if created else "dataset.redeclare", rule.id[:200], {
                "prefix": rule.prefix, "holders": sorted(rule.holders),
                "servers": None if rule.servers is None else sorted(rule.servers)})
        return rule

    async def remove(self, actor: str, dataset_id: str, owner: DatasetOwnerRow | None) -> dict[str, Any]:
        norm = normalise_dataset_id(dataset_id)
        if owner is not None and not _covered(owner, norm):
            raise Forbidden(f"dataset owner {owner.id} may remove only ids under {', '.join(owner.prefixes)}",
                            reason="not_your_dataset")
        async with self.registry.change() as tx:
            if not await tx.delete_dataset_rule(norm):
                raise NotFound(f"no declaration for dataset {norm!r}", reason="unknown_dataset")
            await tx.audit(actor, "dataset.remove", norm[:200], {})
        return {"id": norm, "removed": True}

    async def rules(self) -> list[DatasetRule]:
        async with self.registry.store.read() as tx:
            return await tx.dataset_rules()

    async def add_owner(self, actor: str, body: DatasetOwnerCreate) -> DatasetOwnerRow:
        try:
            keys = PublicKeySet.from_jwks(body.jwks)
        except KeyMaterialError as exc:
            raise InvalidRequest(f"jwks: {exc.message}", reason="bad_key") from None
        prefixes = tuple(normalise_dataset_id(p) for p in body.prefixes)
        if any(len(p) < 3 for p in prefixes):
            raise InvalidRequest("each prefix must be at least 3 characters (an owner speaks for its own datasets)",
                             reason="prefix_too_short")
        owner = DatasetOwnerRow(id=body.id, display_name=body.display_name, jwks=keys.to_jwks(), prefixes=prefixes)
        async with self.registry.change() as tx:
            await tx.add_dataset_owner(owner)
            await tx.audit(actor, "dataset_owner.create", owner.id, {"prefixes": list(prefixes), "kids": keys.kids})
        return owner

    async def owners(self) -> list[DatasetOwnerRow]:
        async with self.registry.store.read() as tx:
            return await tx.dataset_owners()

    async def remove_owner(self, actor: str, owner_id: str) -> dict[str, Any]:
        async with self.registry.change() as tx:
            if not await tx.delete_dataset_owner(owner_id):
                raise NotFound(f"no dataset owner with id {owner_id!r}", reason="unknown_owner")
            await tx.audit(actor, "dataset_owner.remove", owner_id, {})
        return {"id": owner_id, "removed": True}


def owner_actor(owner: DatasetOwnerRow) -> str:
    return f"owner:{owner.id}"

