"""The enrollment client: prove possession of the member key and pin the broker's keys.

The enrollment token names the broker key (its RFC 7638 thumbprint) the member
must trust. The member POSTs an ``EnrollmentRequest`` to ``/api/v1/enroll``
with a request token signed by its own key (``iss`` = member id, ``aud`` = that
thumbprint), and accepts the answer only if the broker's JWKS contains the
pinned key and the ``Federation-Signature`` header, a document signed by that
key, carries exactly the response body. Nothing is written otherwise.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from fedproto.clock import Clock, SystemClock
from fedproto.enrollment import EnrollmentRequest, EnrollmentResponse, EnrollmentToken
from fedproto.errors import ProtocolError
from fedproto.keys import PublicKeySet
from fedproto.tls import client_context, describe_failure
from fedproto.tokens import sign_request, verify_document
from fedproto.version import PROTOCOL, PROTOCOL_HEADER, ProtocolVersionError, peer_version

from .config import MemberConfig, atomic_write, set_broker

ENROLL_PATH = "/api/v1/enroll"
SIGNATURE_HEADER = "Federation-Signature"
TIMEOUT = 30.0


class EnrollError(Exception):
    """Enrollment failed or the broker's answer cannot be trusted; nothing was written."""


def enrollment_body(config: MemberConfig, token: EnrollmentToken) -> bytes:
    member = config.member
    request = EnrollmentRequest(
        token=str(token),
        member_id=member.id,
        display_name=member.display_name or member.id,
        agent_url=member.agent_url,
        public_url=member.public_url,
        location=member.location,
        datasets=member.datasets,
        jwks=config.load_keys().public_set().to_jwks(),
    )
    return request.model_dump_json().encode()


def check_response(raw: bytes, signature: str | None, token: EnrollmentToken, member_id: str, clock: Clock) -> EnrollmentResponse:
    """The broker's answer, once it is proven to come from the pinned broker key."""
    try:
        body = json.loads(raw)
        response = EnrollmentResponse.received(body)
        broker_keys = PublicKeySet.from_jwks(response.broker_jwks)
    except (ValueError, ValidationError, ProtocolError) as exc:
        raise EnrollError(f"the broker's answer is not an enrollment response: {exc}") from None
    pinned = broker_keys.get(token.broker_kid)
    if pinned is None:
        raise EnrollError("the broker's keys do not include the key named in the enrollment token; refusing to trust it")
    if not signature:
        raise EnrollError(f"the broker's answer has no {SIGNATURE_HEADER} header; refusing to trust it")
    try:
        checked = verify_document(signature, keys=PublicKeySet([pinned]), issuer=response.broker_id, clock=clock)
    except ProtocolError as exc:
        raise EnrollError(f"the broker's signature does not verify ({exc.reason}); refusing to trust it") from None
    if checked["doc"] != body:
        raise EnrollError("the broker's signature covers another answer than the one received; refusing to trust it")
    if response.member_id != member_id:
        raise EnrollError(f"the broker enrolled {response.member_id!r}, not this member {member_id!r}")
    return response


async def enroll(
    config: MemberConfig, broker_url: str, token_text: str, *, clock: Clock | None = None
) -> EnrollmentResponse:
    """Enroll with the broker at ``broker_url``; on success pin its keys and record it in member.toml."""
    clock = clock or SystemClock()
    try:
        token = EnrollmentToken.parse(token_text)
    except ProtocolError as exc:
        raise EnrollError(exc.message) from None
    url = broker_url.rstrip("/") + ENROLL_PATH
    body = enrollment_body(config, token)
    authorization = sign_request(
        config.load_keys().signing_key,
        issuer=config.member.id,
        audience=token.broker_kid,
        method="POST",
        path_qs=urlsplit(url).path,
        body=body,
        clock=clock,
    )
    headers = {"Authorization": f"Bearer {authorization}", "Content-Type": "application/json",
               PROTOCOL_HEADER: str(PROTOCOL)}
    try:
        connector = aiohttp.TCPConnector(ssl=client_context(config.ca_bundle))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
                try:
                    peer_version(resp.headers.get(PROTOCOL_HEADER), peer=f"the broker at {broker_url}")
                except ProtocolVersionError as exc:
                    raise EnrollError(exc.message) from None
                if resp.status >= 400:
                    raise EnrollError(f"the broker refused enrollment (HTTP {resp.status}): {_error_text(raw)}")
                signature = resp.headers.get(SIGNATURE_HEADER)
    except (aiohttp.ClientError, OSError) as exc:
        raise EnrollError(f"cannot reach the broker at {url}: {describe_failure(exc)}") from None
    response = check_response(raw, signature, token, config.member.id, clock)
    jwks = PublicKeySet.from_jwks(response.broker_jwks).to_jwks()
    atomic_write(config.broker_jwks_path, (json.dumps(jwks, indent=2) + "\n").encode())
    set_broker(config.config_file, broker_url.rstrip("/"), response.broker_id)
    return response


def _error_text(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        return f"{body.get('error')}: {body.get('message')}"
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")
