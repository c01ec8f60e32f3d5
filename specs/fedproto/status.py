"""The status ad: what a member says about itself, signed with its key."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .clock import Clock
from .datasets import Dataset
from .errors import TokenError
from .keys import PrivateKey, PublicKeySet
from .location import Location
from .member import MEMBER_ID_PATTERN
from .repoglob import MAX_SERVES, RepoGlob
from .tokens import sign_document, verify_document
from .wire import WireModel

IMAGE_HASH_CHARS = 16
MAX_IMAGE_HASHES = 20_000


def image_hash(repo_key: str) -> str:
    """The short hash an image summary lists for a repo key (``provider:repo``)."""
    return hashlib.sha256(repo_key.encode()).hexdigest()[:IMAGE_HASH_CHARS]


class HealthCheck(WireModel):
    """One check, in BinderHub's ``/health`` shape (extra detail goes under ``detail``)."""

    service: str = Field(max_length=100)
    ok: bool
    detail: dict[str, Any] = Field(default_factory=dict)


class Capacity(WireModel):
    """How many servers the member can run, runs, and is building for."""

    total: int = Field(ge=0)
    used: int = Field(ge=0)
    building: int = Field(default=0, ge=0)

    @property
    def free(self) -> int:
        return max(0, self.total - self.used - self.building)


class ImageSummary(WireModel):
    """Which repos already have an image here: short hashes of their repo keys."""

    hashes: list[str] = Field(default_factory=list, max_length=MAX_IMAGE_HASHES)
    total: int = Field(default=0, ge=0, description="Images present, even if more than listed.")

    @field_validator("hashes")
    @classmethod
    def _shared(cls, value: list[str]) -> list[str]:
        # One string per distinct hash in the process: a broker holds every member's latest ad and
        # indexes each hash, and popular images are listed by many members. Without this every
        # parsed ad brought its own copies: about 45 KB a member of the ~100 KB a member cost.
        return list(map(sys.intern, value))

    @classmethod
    def of(cls, repo_keys: Iterable[str]) -> ImageSummary:
        hashes = sorted({image_hash(k) for k in repo_keys})
        return cls(hashes=hashes[:MAX_IMAGE_HASHES], total=len(hashes))

    def has(self, repo_key: str) -> bool:
        return image_hash(repo_key) in self.hashes


class RedirectTarget(WireModel):
    """How a browser may launch on this member directly, for a broker in redirect mode.

    ``binderhub``: the member's BinderHub answers ``/build`` and ``/v2`` itself at ``url``.
    ``ticket``: the agent answers ``/build`` at its registered agent URL to a browser carrying a
    broker-signed launch ticket (``url`` is left out; the broker uses the URL it registered).
    A member without one is never a redirect target.
    """

    kind: Literal["binderhub", "ticket"]
    url: str | None = Field(default=None, max_length=2048, description="The BinderHub's base URL (kind binderhub).")


class StatusAd(WireModel):
    """A member's signed self-description, valid until ``expires_at``."""

    member_id: str = Field(pattern=MEMBER_ID_PATTERN)
    instance_id: str = Field(max_length=64, description="Changes when the agent restarts.")
    generation: int = Field(ge=0, description="Increases with every ad of one instance.")
    issued_at: float
    expires_at: float
    healthy: bool
    checks: list[HealthCheck] = Field(default_factory=list, max_length=100)
    capacity: Capacity
    versions: dict[str, str] = Field(default_factory=dict)
    providers: list[str] = Field(default_factory=list)
    backend: str = Field(max_length=32)
    public_url: str | None = Field(default=None, max_length=2048)
    datasets: list[Dataset] = Field(default_factory=list, max_length=10_000)
    location: Location = Field(default_factory=Location)
    images: ImageSummary = Field(default_factory=ImageSummary)
    redirect: RedirectTarget | None = Field(default=None, description="Where a redirected browser launches; none: never redirected to.")
    broker_kids: list[str] | None = Field(
        default=None, max_length=16,
        description="Broker key ids this member pins now; the broker signs with a new key only once every member lists it.",
    )
    serves: list[RepoGlob] | None = Field(
        default=None, max_length=MAX_SERVES,
        description="Repo-key globs (`gh:org/*`; `*` the only wildcard) of the repositories this member serves; none: every repository its providers allow.",
    )

    @model_validator(mode="after")
    def _expiry_after_issue(self) -> StatusAd:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        return self

    def sign(self, key: PrivateKey, clock: Clock) -> str:
        return sign_document(
            key,
            issuer=self.member_id,
            payload=self.model_dump(mode="json"),
            clock=clock,
            ttl=self.expires_at - clock.now(),
        )


def _hashes_digest(hashes: Any) -> bytes | None:
    """SHA-256 of a list of image hashes, equal for two lists only when they are equal; None when
    ``hashes`` is not a list of strings free of NUL (then the encoding would not be one-to-one)."""
    if type(hashes) is not list:
        return None
    try:
        joined = "\x00".join(hashes)
    except TypeError:  # not all strings
        return None
    if joined.count("\x00") != max(len(hashes) - 1, 0):
        return None
    return hashlib.sha256(f"{len(hashes)}\x00{joined}".encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class KnownImages:
    """An image summary already validated for a member, with the digest of its hashes: a later ad
    of the member whose summary has the same digest and total shares it (:func:`verify_status_ad`).

    A digest rather than a comparison of the lists: the known list is cold in memory by the next
    poll, and comparing 400 hashes one by one cost the broker more than validating the rest of the ad.
    """

    summary: ImageSummary
    digest: bytes

    @classmethod
    def of(cls, summary: ImageSummary) -> KnownImages | None:
        digest = _hashes_digest(summary.hashes)
        return None if digest is None else cls(summary, digest)


def _same_images(doc: dict[str, Any], known: KnownImages) -> bool:
    """Whether ``doc``'s image summary is exactly ``known``'s as received: the same hashes in the
    same order and the same total, nothing else, in the JSON types that validate to them unchanged."""
    images = doc.get("images")
    if type(images) is not dict or not images.keys() <= {"hashes", "total"}:
        return False
    total = images.get("total", 0)
    return (type(total) is int and total == known.summary.total
            and _hashes_digest(images.get("hashes", [])) == known.digest)


def verify_status_ad(token: str, *, keys: PublicKeySet, member_id: str, clock: Clock,
                     known: KnownImages | None = None) -> StatusAd:
    """Check the signature with the member's registered keys and that the ad is about that member.

    ``known``: the image summary of the member's last ad, if any. When the new ad's summary is the
    same (as a member's mostly is from one poll to the next), the new ad shares that object instead
    of validating and interning hundreds of hashes again: half the cost of receiving an ad. Only a
    value the validation would reproduce exactly is shared; the new ad's signature, member, times
    and every other field are checked as always.
    """
    checked = verify_document(token, keys=keys, issuer=member_id, clock=clock)
    doc = checked["doc"]
    if known is not None and _same_images(doc, known):
        doc = {**doc, "images": known.summary}  # a model instance is taken as validated
    try:
        ad = StatusAd.received(doc)  # a newer member's extra fields are ignored
    except ValidationError as exc:
        raise TokenError(f"status ad does not match the schema: {exc.error_count()} errors", reason="bad_document") from exc
    if ad.member_id != member_id:
        raise TokenError("status ad names another member than the key that signed it", reason="wrong_member")
    if ad.expires_at < clock.now():
        raise TokenError("status ad has expired", reason="expired")
    return ad
