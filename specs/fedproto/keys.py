"""Ed25519 keys: generation, files, JWKS, RFC 7638 thumbprints and rotation.

A party holds a :class:`KeyRing` of private keys: the newest signs, every key in
it verifies (rotation with overlap, as JupyterHub's crypto keys do). Other parties
see only a :class:`PublicKeySet`, exported and imported as JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import KeyMaterialError

MAX_KEYS = 16  # a JWKS longer than this is refused: rotation needs two or three


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise KeyMaterialError("not base64url") from exc


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw_public(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class PublicKey:
    """One verification key and its id (its thumbprint)."""

    kid: str
    key: Ed25519PublicKey

    def to_jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(_raw_public(self.key)),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    @classmethod
    def from_jwk(cls, jwk: Any) -> PublicKey:
        if not isinstance(jwk, dict):
            raise KeyMaterialError("a JWK must be an object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise KeyMaterialError(
                f"only Ed25519 (kty OKP, crv Ed25519) keys are accepted, got "
                f"kty={jwk.get('kty')!r} crv={jwk.get('crv')!r}"
            )
        if "d" in jwk:
            raise KeyMaterialError("a public JWKS must not contain private key material")
        if jwk.get("alg", "EdDSA") != "EdDSA":
            raise KeyMaterialError("an Ed25519 key must have alg EdDSA")
        x = jwk.get("x")
        if not isinstance(x, str):
            raise KeyMaterialError("JWK is missing x")
        raw = b64url_decode(x)
        if len(raw) != 32:
            raise KeyMaterialError("an Ed25519 public key is 32 bytes")
        key = Ed25519PublicKey.from_public_bytes(raw)
        kid = thumbprint(key)
        if "kid" in jwk and jwk["kid"] != kid:
            raise KeyMaterialError("JWK kid is not the key's RFC 7638 thumbprint")
        return cls(kid=kid, key=key)


class PublicKeySet:
    """The keys another party verifies with (a JWKS), looked up by kid."""

    def __init__(self, keys: list[PublicKey]) -> None:
        if len(keys) > MAX_KEYS:
            raise KeyMaterialError(f"a key set holds at most {MAX_KEYS} keys")
        self._keys = {k.kid: k for k in keys}
        self._order = [k.kid for k in keys]

    @classmethod
    def from_jwks(cls, jwks: Any) -> PublicKeySet:
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise KeyMaterialError('a JWKS is an object with a "keys" list')
        if not jwks["keys"]:
            raise KeyMaterialError("a JWKS must hold at least one key")
        return cls([PublicKey.from_jwk(k) for k in jwks["keys"]])

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self._keys[kid].to_jwk() for kid in self._order]}

    def get(self, kid: str) -> PublicKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return list(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def merged(self, other: PublicKeySet) -> PublicKeySet:
        """This set plus the keys of ``other`` it does not have yet."""
        extra = [other._keys[kid] for kid in other._order if kid not in self._keys]
        return PublicKeySet([self._keys[k] for k in self._order] + extra)

    def without(self, kid: str) -> PublicKeySet:
        return PublicKeySet([self._keys[k] for k in self._order if k != kid])


@dataclass(frozen=True)
class PrivateKey:
    """One signing key with its creation time (which orders rotation)."""

    key: Ed25519PrivateKey
    created: float

    @cached_property
    def public(self) -> PublicKey:
        # Cached: the kid is a thumbprint (a SHA-256 over JSON), and the broker asks for it on
        # every request it signs (a tenth of a poll's CPU before).
        pub = self.key.public_key()
        return PublicKey(kid=thumbprint(pub), key=pub)

    @property
    def kid(self) -> str:
        return self.public.kid

    @classmethod
    def generate(cls, created: float | None = None) -> PrivateKey:
        return cls(key=Ed25519PrivateKey.generate(), created=time.time() if created is None else created)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:  # never print key material
        return f"PrivateKey(kid={self.kid!r}, created={self.created!r})"


class KeyRing:
    """A party's own keys: the newest signs, all of them verify."""

    def __init__(self, keys: list[PrivateKey]) -> None:
        if not keys:
            raise KeyMaterialError("a key ring needs at least one key")
        self._keys = sorted(keys, key=lambda k: k.created)

    @property
    def signing_key(self) -> PrivateKey:
        return self._keys[-1]

    @property
    def keys(self) -> list[PrivateKey]:
        return list(self._keys)

    def get(self, kid: str) -> PrivateKey | None:
        return next((k for k in self._keys if k.kid == kid), None)

    def with_new_key(self, new_key: PrivateKey | None = None) -> KeyRing:
        """This ring plus a new, newest key; nothing is dropped (``without`` retires a key)."""
        new_key = new_key or PrivateKey.generate(created=max(time.time(), self._keys[-1].created + 1e-3))
        if len(self._keys) >= MAX_KEYS:
            raise KeyMaterialError(f"a key ring holds at most {MAX_KEYS} keys: retire one first")
        return KeyRing(self._keys + [new_key])

    def without(self, kid: str) -> KeyRing:
        """This ring less ``kid``; refuses the last key (nothing could sign any more)."""
        if self.get(kid) is None:
            raise KeyMaterialError(f"no key {kid!r} in this key ring")
        if len(self._keys) == 1:
            raise KeyMaterialError(f"{kid!r} is the only key: rotate first, then retire the old one")
        return KeyRing([k for k in self._keys if k.kid != kid])

    def public_set(self) -> PublicKeySet:
        # Newest first, so a JWKS reader that takes the first key takes the signer.
        return PublicKeySet([k.public for k in reversed(self._keys)])

    def rotated(self, new_key: PrivateKey | None = None, keep: int = 2) -> KeyRing:
        """A ring with a new signing key, keeping the ``keep - 1`` previous ones."""
        new_key = new_key or PrivateKey.generate(created=max(time.time(), self._keys[-1].created + 1e-3))
        return KeyRing((self._keys + [new_key])[-keep:])

    # -- files -------------------------------------------------------------
    @staticmethod
    def _file_name(key: PrivateKey) -> str:
        return f"ed25519-{int(key.created * 1_000_000):020d}.pem"

    def save(self, directory: Path) -> None:
        """Write every key as ``ed25519-<created µs>.pem`` with mode 0600; drop rotated-out files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        wanted = {self._file_name(k): k for k in self._keys}
        for name, key in wanted.items():
            path = directory / name
            if path.exists():
                continue
            tmp = directory / (name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.to_pem())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        for path in directory.glob("ed25519-*.pem"):
            if path.name not in wanted:
                path.unlink()

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        directory = Path(directory)
        keys = []
        for path in sorted(directory.glob("ed25519-*.pem")):
            try:
                created = int(path.stem.split("-", 1)[1]) / 1_000_000
                loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, IndexError) as exc:
                raise KeyMaterialError(f"cannot read key file {path.name}") from exc
            if not isinstance(loaded, Ed25519PrivateKey):
                raise KeyMaterialError(f"{path.name} is not an Ed25519 key")
            keys.append(PrivateKey(key=loaded, created=created))
        if not keys:
            raise KeyMaterialError(f"no ed25519-*.pem key files in {directory}")
        return cls(keys)

    @classmethod
    def load_or_create(cls, directory: Path) -> KeyRing:
        directory = Path(directory)
        if any(directory.glob("ed25519-*.pem")):
            return cls.load(directory)
        ring = cls([PrivateKey.generate()])
        ring.save(directory)
        return ring


def _listing(directory: Path) -> tuple[tuple[str, int], ...]:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("ed25519-*.pem")))
    except OSError:
        return ()


class KeyDir:
    """A key ring that follows its directory: a key added or retired there is used without a restart.

    ``current()`` looks at the directory's listing at most every ``min_interval`` seconds
    and reloads when it changed. A directory caught half-written (no key, unreadable file)
    keeps the ring it had: a running party never loses its keys to a reload.
    """

    def __init__(self, directory: Path | None, ring: KeyRing | None = None, *, min_interval: float = 1.0) -> None:
        # directory None: a fixed ring (tests and callers that inject keys).
        self.directory = Path(directory) if directory is not None else None
        self.min_interval = min_interval
        if ring is None:
            if self.directory is None:
                raise KeyMaterialError("a KeyDir needs a directory or a ring")
            ring = KeyRing.load(self.directory)
        self._ring = ring
        self._listing = _listing(self.directory) if self.directory is not None else ()
        self._checked = time.monotonic()

    def current(self) -> KeyRing:
        now = time.monotonic()
        if self.directory is not None and now - self._checked >= self.min_interval:
            self._checked = now
            self.reload()
        return self._ring

    def reload(self) -> bool:
        """Re-read the directory now if its listing changed; True when the ring changed."""
        if self.directory is None:
            return False
        listing = _listing(self.directory)
        if listing == self._listing:
            return False
        try:
            ring = KeyRing.load(self.directory)
        except KeyMaterialError:
            return False
        self._listing = listing
        changed = [k.kid for k in ring.keys] != [k.kid for k in self._ring.keys]
        self._ring = ring
        return changed
