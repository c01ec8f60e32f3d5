"""The broker's own keys during rotation: which key signs, what is published, who holds rotation back.

The ring follows the keys directory (``fedbroker keys rotate`` adds a file, ``keys retire``
removes one; a running broker picks either up within a second, no restart). Every key in
the ring is published (``/.well-known/jwks.json`` and the signed ``/api/v1/broker-keys``),
but a new key signs only once every polled member's latest status ad says it pins it
(``fedproto.keyrotation.signing_key``). It quacks like a :class:`~fedproto.keys.KeyRing`
(``signing_key``, ``public_set()``, ``keys``), so signers need not know about rotation.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from fedproto.clock import Clock
from fedproto.keyrotation import sign_key_set, signing_key, waiting_on
from fedproto.keys import KeyDir, KeyRing, PrivateKey, PublicKeySet

# member id -> the broker key ids its latest ad lists (None: not said yet), for the polled members.
PinsSource = Callable[[], Mapping[str, list[str] | None]]
# The answer is kept this long: signing reads it on every request, and it walks every member
# (at 1,000 members, working it out twice a second was 5 % of the CPU of health polling). Pins
# change with status ads, once per poll interval (10 s) at most, so a key waits at most 2 s more.
# A registry change (a member enrolled, retired or back) is seen at once: the answer is also kept
# only while the pins' ``version`` (the registry snapshot) is the one it was worked out for.
_CACHE_SECONDS = 2.0


class BrokerKeys:
    """The broker's key ring plus the members' pins that decide which key signs."""

    def __init__(self, keydir: KeyDir, pins: PinsSource | None = None) -> None:
        self.keydir = keydir
        self._pins: PinsSource = pins or (lambda: {})
        self._version: Callable[[], object] = lambda: None
        self._cached: tuple[float, KeyRing, object, PrivateKey] | None = None

    def bind_pins(self, pins: PinsSource, version: Callable[[], object] | None = None) -> None:
        """Where members' pins come from (set once health exists), and what changes when the set of
        members whose pins count does (compared by identity)."""
        self._pins = pins
        self._version = version or (lambda: None)
        self._cached = None

    @property
    def ring(self) -> KeyRing:
        return self.keydir.current()

    @property
    def keys(self) -> list[PrivateKey]:
        return self.ring.keys

    @property
    def signing_key(self) -> PrivateKey:
        ring, version = self.ring, self._version()
        now = time.monotonic()
        cached = self._cached
        if cached is not None and cached[1] is ring and cached[2] is version and now - cached[0] < _CACHE_SECONDS:
            return cached[3]
        pins = self._pins()
        key = signing_key(ring, pins, list(pins))
        self._cached = (now, ring, version, key)
        return key

    def public_set(self) -> PublicKeySet:
        """Every key, newest first: published as soon as it is in the ring."""
        return self.ring.public_set()

    def signed_key_set(self, issuer: str, clock: Clock) -> str:
        return sign_key_set(self.signing_key, issuer=issuer, keys=self.public_set(), clock=clock)

    def status(self) -> dict[str, Any]:
        """For ``GET /api/v1/broker-keys/status`` and ``fedbroker keys status``."""
        ring, pins = self.ring, self._pins()
        signer = self.signing_key.kid
        waiting = waiting_on(ring, pins, list(pins))
        keys = [
            {"kid": k.kid, "created": k.created, "signing": k.kid == signer, "waiting_on": waiting[k.kid]}
            for k in reversed(ring.keys)
        ]
        return {"signing": signer, "keys": keys, "members": sorted(pins)}
