"""Broker key rotation: the broker-signed key set members refresh, and when a new key may sign.

The broker publishes every key in its ring, but signs with a new key only once every
member it polls has shown (in the ``broker_kids`` of its signed status ad) that it pins
that key. Until then it signs with the newest key they all pin, which is at worst the
oldest key of the ring: every member enrolled before the rotation pins it, and every member
enrolled after got the whole set. Retiring a key is safe once no member depends on it.

Members fetch ``GET /api/v1/broker-keys`` from the broker: a signed document whose ``doc``
is ``{"keys": [...JWKS...]}``. A member accepts it only when a key it already pins signed
it, and then pins exactly the set it names (newly published keys in, retired keys out).
"""

from __future__ import annotations

from typing import Collection, Iterable, Mapping

from .clock import Clock
from .errors import KeyMaterialError, TokenError
from .keys import KeyRing, PrivateKey, PublicKeySet
from .tokens import sign_document, signer_kid, verify_document

KEY_SET_TTL = 300.0  # seconds a signed key set stays valid; members refresh more often than this


def sign_key_set(key: PrivateKey, *, issuer: str, keys: PublicKeySet, clock: Clock, ttl: float = KEY_SET_TTL) -> str:
    """The broker's key set as a signed document."""
    return sign_document(key, issuer=issuer, payload=keys.to_jwks(), clock=clock, ttl=ttl)


def verify_key_set(token: str, *, pinned: PublicKeySet, issuer: str | None, clock: Clock) -> PublicKeySet:
    """The key set in ``token``, if a pinned key signed it; raises :class:`TokenError` otherwise.

    The signer must stay in the new set: a set that drops the very key that vouches for it
    would leave the member trusting keys nothing it knows has endorsed past this moment.
    """
    checked = verify_document(token, keys=pinned, issuer=issuer, clock=clock)
    try:
        keys = PublicKeySet.from_jwks(checked["doc"])
    except KeyMaterialError as exc:
        raise TokenError(f"the signed key set is not a usable JWKS: {exc.message}", reason="bad_document") from exc
    signer = signer_kid(token)
    if signer not in keys:
        raise TokenError("the signed key set drops the key that signed it", reason="bad_document")
    return keys


def signing_key(ring: KeyRing, pins: Mapping[str, Collection[str] | None], members: Iterable[str]) -> PrivateKey:
    """The newest key of ``ring`` that every one of ``members`` pins, else the oldest key.

    ``pins`` maps a member id to the broker key ids its latest ad lists, or None when it
    has not said (no ad yet, or an agent too old to say): such a member holds rotation back.
    """
    keys = ring.keys  # oldest first
    if len(keys) == 1:
        return keys[0]
    # Each member's pins as given (a short list): the broker asks this for every request it
    # signs (cached briefly), over every member, and building a set per member made it 0.4 ms.
    needed = [pins.get(m) for m in members]
    for key in reversed(keys):
        if all(p is not None and key.kid in p for p in needed):
            return key
    return keys[0]


def waiting_on(ring: KeyRing, pins: Mapping[str, Iterable[str] | None], members: Iterable[str]) -> dict[str, list[str]]:
    """For each key of the ring, the members that do not pin it yet (for ``fedbroker keys status``)."""
    member_list = list(members)
    out: dict[str, list[str]] = {}
    for key in ring.keys:
        out[key.kid] = sorted(m for m in member_list if key.kid not in set(pins.get(m) or ()))
    return out
