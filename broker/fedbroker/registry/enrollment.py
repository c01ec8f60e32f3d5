"""Member enrollment: a one-time token plus proof of key possession creates (or refreshes) a member.

The checks run cheapest and most specific first, and nothing is written until
all of them pass. The enrollment token's secret is checked against the registry before
the request's signature and ``jti`` are: otherwise anyone could sign requests with a key
of their own and fill the replay cache (which member requests share) with their ids,
blocking enrollment and key rotation for everyone. The writes (token consumed, member stored, audit entry,
revision bumped) are one transaction, so a rejected enrollment leaves no trace
and an accepted one is durable before it is answered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fedproto.clock import Clock
from fedproto.enrollment import EnrollmentRequest, EnrollmentResponse, EnrollmentToken
from fedproto.errors import Conflict, Unauthenticated
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.member import MemberRecord, MemberState
from fedproto.replay import ReplayCache
from fedproto.tokens import bearer, sign_document, signer_kid, verify_request

from ..config import BrokerConfig
from ..jsonbody import parse_json
from .service import Registry
from .store import EnrollTokenRow, Tx
from .urlpolicy import check_agent_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Federation-Signature"
RESPONSE_SIGNATURE_TTL = 300.0


@dataclass(frozen=True)
class EnrollmentResult:
    """The answer: its JSON body and the broker's signature over it."""

    response: EnrollmentResponse
    body: bytes
    signature: str


@dataclass(frozen=True)
class _Proven:
    """An enrollment request whose token parsed and whose proof of possession verified."""

    request: EnrollmentRequest
    token: EnrollmentToken
    broker_key: PrivateKey
    keys: PublicKeySet
    signer_kid: str


def _check_token_row(row: EnrollTokenRow | None, token: EnrollmentToken, now: float | None = None) -> EnrollTokenRow:
    """The token's row when it may still be used, else 401 saying why."""
    if row is None or row.broker_kid != token.broker_kid:
        raise Unauthenticated("unknown enrollment token", reason="unknown_enrollment_token")
    if row.revoked_at is not None:
        raise Unauthenticated(f"enrollment token {row.id} was revoked", reason="revoked_enrollment_token")
    if row.used_at is not None:
        raise Unauthenticated(f"enrollment token {row.id} was already used", reason="used_enrollment_token")
    if now is not None and row.expires_at <= now:
        raise Unauthenticated(f"enrollment token {row.id} has expired", reason="expired_enrollment_token")
    return row


class Enrollment:
    """``POST /api/v1/enroll``: checks an application and admits the member."""

    def __init__(self, registry: Registry, config: BrokerConfig, keyring: KeyRing, clock: Clock,
                 replay: ReplayCache) -> None:
        self.registry = registry
        self.config = config
        self.keyring = keyring
        self.clock = clock
        self.replay = replay

    async def enroll(self, *, authorization: str | None, path_qs: str, body: bytes) -> EnrollmentResult:
        req, token = self._parse(body)
        broker_key = self._broker_key(token)
        async with self.registry.store.read() as tx:
            _check_token_row(await tx.enroll_token(token.secret), token, tx.now)
        proven = self._prove(authorization, path_qs, body, req, token, broker_key)
        agent_url = await check_agent_url(req.agent_url, self.config)
        # The broker calls the public URL too (canary checks): it must not point inside either.
        public_url = await check_agent_url(req.public_url, self.config, field="public_url")
        async with self.registry.change() as tx:
            row = await self._take_token(tx, proven)
            record = await self._admit(tx, proven, row, agent_url, public_url)
        log.info("member %s enrolled (%s) with token %s", record.id, record.state.value, row.id)
        return self._answer(record, proven.broker_key)

    @staticmethod
    def _parse(body: bytes) -> tuple[EnrollmentRequest, EnrollmentToken]:
        req = parse_json(body, EnrollmentRequest, from_member=True)
        return req, EnrollmentToken.parse(req.token)

    def _broker_key(self, token: EnrollmentToken) -> PrivateKey:
        broker_key = next((k for k in self.keyring.keys if k.kid == token.broker_kid), None)
        if broker_key is None:
            raise Unauthenticated("the enrollment token was issued for another broker key",
                               reason="wrong_broker")
        return broker_key

    def _prove(self, authorization: str | None, path_qs: str, body: bytes, req: EnrollmentRequest,
               token: EnrollmentToken, broker_key: PrivateKey) -> _Proven:
        """Check the member's signature: proof that it holds a key in ``jwks``. Stores its ``jti``."""
        request_token = bearer(authorization)
        keys = PublicKeySet.from_jwks(req.jwks)
        verify_request(
            request_token, keys=keys, issuer=req.member_id, audience=token.broker_kid, method="POST",
            path_qs=path_qs, body=body, clock=self.clock, replay=self.replay,
        )
        signer = signer_kid(request_token)  # verified just above
        return _Proven(request=req, token=token, broker_key=broker_key, keys=keys, signer_kid=signer)

    async def _take_token(self, tx: Tx, proven: _Proven) -> EnrollTokenRow:
        row = _check_token_row(await tx.enroll_token(proven.token.secret), proven.token, tx.now)
        if not await tx.consume_enroll_token(row.id, proven.request.member_id):
            raise Unauthenticated(f"enrollment token {row.id} was already used", reason="used_enrollment_token")
        return row

    async def _admit(self, tx: Tx, proven: _Proven, row: EnrollTokenRow, agent_url: str,
                     public_url: str) -> MemberRecord:
        req = proven.request
        existing = await tx.member(req.member_id, for_update=True)
        fields: dict[str, Any] = {
            "display_name": req.display_name, "agent_url": agent_url, "public_url": public_url,
            "location": req.location, "datasets": req.datasets, "labels": req.labels,
            "jwks": proven.keys.to_jwks(), "updated_at": tx.now,
        }
        details = {"token_id": row.id, "token_name": row.name, "kids": proven.keys.kids}
        if existing is None:
            state = MemberState.active if row.auto_approve else MemberState.pending
            record = MemberRecord(id=req.member_id, state=state, created_at=tx.now, **fields)
            await tx.insert_member(record)
            await tx.audit(f"member:{req.member_id}", "member.enroll", req.member_id,
                           {**details, "state": state.value})
            return record
        if proven.signer_kid not in PublicKeySet.from_jwks(existing.jwks):
            # Only the holder of a registered key may re-enroll an id: no hijacking by token alone.
            raise Conflict(
                f"member {req.member_id!r} is already enrolled; re-enrollment must be signed by "
                "one of its registered keys", reason="member_exists",
            )
        # A re-enrollment proves the member's key, not its claims: the datasets the registry
        # says it holds stay as an admin approved them (routing must never be widened by a member).
        record = existing.model_copy(update={k: v for k, v in fields.items() if k != "datasets"})
        await tx.update_member(record)
        await tx.audit(f"member:{req.member_id}", "member.reenroll", req.member_id,
                       {**details, "state": record.state.value})
        return record

    def _answer(self, record: MemberRecord, broker_key: PrivateKey) -> EnrollmentResult:
        response = EnrollmentResponse(
            member_id=record.id, state=record.state, broker_id=self.config.broker_id,
            broker_jwks=self.keyring.public_set().to_jwks(),
        )
        payload = response.model_dump(mode="json")
        signature = sign_document(broker_key, issuer=self.config.broker_id, payload=payload,
                                  clock=self.clock, ttl=RESPONSE_SIGNATURE_TTL)
        return EnrollmentResult(response=response, body=json.dumps(payload).encode(), signature=signature)
