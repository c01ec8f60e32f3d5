"""Launch tickets: what lets a browser, redirected by the broker, launch on a member's agent directly.

In redirect mode the broker answers ``/build/{provider}/{spec}`` with a 307 to the chosen
member's agent, ``{agent}/build/{provider}/{spec}?ticket=<JWT>``. The ticket is an EdDSA JWT
signed by the broker (header ``typ`` ``fed-ticket+jwt``, so neither a request token nor a
signed document can stand in for it), for one member (``aud``), bound to the launch it names
(``provider``, ``spec`` with its ref, the ``data`` list, in order), valid for at most 60 s and
accepted once (its ``jti`` goes into the agent's replay cache). The agent checks it offline
with the broker keys it pinned at enrollment: no call back to the broker.
"""

from __future__ import annotations

import secrets
from typing import Any, Sequence

from .clock import Clock
from .errors import TokenError
from .keys import PrivateKey, PublicKeySet
from .replay import ReplayCache
from .tokens import DEFAULT_LEEWAY, _check_issuer, _check_times, _decode_verified, _encode

TICKET_TYP = "fed-ticket+jwt"
MAX_TICKET_LIFETIME = 60.0
TICKET_TTL = 30.0
# What a ticket binds: a change to any of them (another repo, ref or dataset) is another launch.
BOUND_CLAIMS = ("provider", "spec", "data")


def sign_ticket(
    key: PrivateKey,
    *,
    issuer: str,
    audience: str,
    provider: str,
    spec: str,
    data: Sequence[str],
    launch_id: str,
    clock: Clock,
    decision_id: str | None = None,
    client_ip: str | None = None,
    origin: str | None = None,
    ttl: float = TICKET_TTL,
) -> str:
    """A ticket for one launch of ``provider/spec`` (``spec`` exactly as it appears in the URL path)."""
    now = clock.now()
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "iat": int(now),
        "exp": int(now + min(ttl, MAX_TICKET_LIFETIME)),
        "jti": secrets.token_urlsafe(18),
        "provider": provider,
        "spec": spec,
        "data": list(data),
        "launch_id": launch_id,
    }
    optional = {"decision": decision_id, "client_ip": client_ip, "origin": origin}
    claims.update({k: v for k, v in optional.items() if v is not None})
    return _encode(key, claims, TICKET_TYP)


def verify_ticket(
    token: str,
    *,
    keys: PublicKeySet,
    issuer: str | None,
    audience: str,
    provider: str,
    spec: str,
    data: Sequence[str],
    clock: Clock,
    replay: ReplayCache | None,
    leeway: float = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Check a ticket against the launch the browser asks for; return its claims or raise :class:`TokenError`.

    The replay cache is consulted last, so a ticket refused for another reason is not used up.
    """
    claims = _decode_verified(token, keys, TICKET_TYP)
    _check_issuer(claims, issuer)
    if claims.get("aud") != audience:
        raise TokenError("launch ticket is for another member", reason="wrong_audience")
    now = clock.now()
    _check_times(claims, now, leeway, MAX_TICKET_LIFETIME)
    jti, launch_id = claims.get("jti"), claims.get("launch_id")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
        raise TokenError("launch ticket needs a jti of 8 to 128 characters", reason="missing_claim")
    if not isinstance(launch_id, str) or not launch_id:
        raise TokenError("launch ticket names no launch id", reason="missing_claim")
    asked = {"provider": provider, "spec": spec, "data": list(data)}
    for name in BOUND_CLAIMS:
        if claims.get(name) != asked[name]:
            raise TokenError(f"launch ticket is for another launch ({name} differs)", reason="wrong_launch")
    if replay is not None:
        replay.check_and_add(jti, float(claims["exp"]), now)
    return claims
