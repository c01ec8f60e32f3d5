"""``fedmember keys rotate`` and ``keys retire``: the member's own key rotation, live.

Rotate: generate a key, register its public half with the broker in a request signed by
the current key (``POST /api/v1/members/{id}/keys``), and only once the broker has it,
write it to ``keys/``. The running agent follows ``keys/`` (``fedproto.keys.KeyDir``), so
its next status ad is signed with the new key: no restart, no server stopped.

Retire: ask the broker to drop an old key (``DELETE /api/v1/members/{id}/keys/{kid}``,
signed by the newest key, never by the one being retired), then delete its file. The
signing (newest) key cannot be retired.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp

from fedproto.clock import Clock, SystemClock
from fedproto.errors import KeyMaterialError
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.tls import client_context, describe_failure
from fedproto.tokens import sign_request
from fedproto.version import PROTOCOL, PROTOCOL_HEADER

from .config import ConfigError, MemberConfig

TIMEOUT = 30.0


class KeyCommandError(Exception):
    """A key command that did not happen; nothing was changed locally."""


async def _call(config: MemberConfig, ring: KeyRing, method: str, path: str, body: bytes, clock: Clock) -> dict:
    broker = config.broker
    if not broker.url or not broker.id:
        raise KeyCommandError("this member has not enrolled yet (no [broker] url and id): run `fedmember enroll` first")
    url = broker.url.rstrip("/") + path
    token = sign_request(ring.signing_key, issuer=config.member.id, audience=broker.id, method=method,
                         path_qs=urlsplit(url).path, body=body, clock=clock)
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL)}
    if body:
        headers["Content-Type"] = "application/json"
    connector = aiohttp.TCPConnector(ssl=client_context(config.ca_bundle))
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.request(method, url, data=body or None, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KeyCommandError(f"cannot reach the broker at {broker.url}: {describe_failure(exc)}") from None
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        payload = {}
    if status >= 400:
        detail = f"{payload.get('error')}: {payload.get('message')}" if isinstance(payload, dict) else raw[:200]
        raise KeyCommandError(f"the broker refused (HTTP {status}): {detail}")
    return payload if isinstance(payload, dict) else {}


async def rotate(config: MemberConfig, *, clock: Clock | None = None) -> PrivateKey:
    """Add a new signing key at the broker, then in ``keys/``; return it."""
    clock = clock or SystemClock()
    ring = config.load_keys()
    try:
        grown = ring.with_new_key()
    except KeyMaterialError as exc:
        raise KeyCommandError(exc.message) from None
    new_key = grown.signing_key
    body = json.dumps({"jwks": PublicKeySet([new_key.public]).to_jwks()}).encode()
    await _call(config, ring, "POST", f"/api/v1/members/{config.member.id}/keys", body, clock)
    grown.save(config.keys_dir)  # the broker knows the key now: the agent may sign with it
    return new_key


async def retire(config: MemberConfig, kid: str | None = None, *, clock: Clock | None = None) -> list[str]:
    """Drop ``kid`` (default: every key but the newest) at the broker, then from ``keys/``."""
    clock = clock or SystemClock()
    ring = config.load_keys()
    signing = ring.signing_key
    if kid == signing.kid:
        raise KeyCommandError(f"{kid} is the signing (newest) key: rotate first, then retire the old one")
    targets = [kid] if kid else [k.kid for k in ring.keys if k.kid != signing.kid]
    if kid and ring.get(kid) is None:
        raise KeyCommandError(f"no key {kid!r} in {config.keys_dir}")
    if not targets:
        raise KeyCommandError("there is only one key: nothing to retire")
    for target in targets:
        await _call(config, ring, "DELETE", f"/api/v1/members/{config.member.id}/keys/{target}", b"", clock)
        ring = ring.without(target)
        ring.save(config.keys_dir)
    return targets


def describe(config: MemberConfig) -> list[str]:
    """One line per key, newest (signing) first."""
    try:
        ring = config.load_keys()
    except ConfigError as exc:
        raise KeyCommandError(str(exc)) from None
    signing = ring.signing_key.kid
    return [f"{k.kid}  {'signing' if k.kid == signing else 'verifying only'}" for k in reversed(ring.keys)]
