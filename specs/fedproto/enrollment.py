"""Enrollment: the one-time token format, the member's request and the broker's answer."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from .datasets import Dataset
from .errors import TokenError
from .location import Location
from .member import MEMBER_ID_PATTERN, MemberState
from .wire import WireModel

_TOKEN = re.compile(r"^fedenroll_([A-Za-z0-9_-]{32,64})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class EnrollmentToken:
    """``fedenroll_<secret>.<broker key thumbprint>``: the secret is checked by the
    broker, the thumbprint lets the member pin the broker before trusting anything."""

    secret: str
    broker_kid: str

    @classmethod
    def new(cls, broker_kid: str) -> EnrollmentToken:
        return cls(secret=secrets.token_urlsafe(32), broker_kid=broker_kid)

    @classmethod
    def parse(cls, text: str) -> EnrollmentToken:
        match = _TOKEN.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise TokenError("enrollment token is malformed", reason="bad_enrollment_token")
        return cls(secret=match.group(1), broker_kid=match.group(2))

    def __str__(self) -> str:
        return f"fedenroll_{self.secret}.{self.broker_kid}"

    def __repr__(self) -> str:  # never print the secret
        return f"EnrollmentToken(broker_kid={self.broker_kid!r})"


class EnrollmentRequest(WireModel):
    """A new member's application. Sent with a request token signed by a key in ``jwks``."""

    token: str = Field(max_length=200, description="The one-time enrollment token.")
    member_id: str = Field(pattern=MEMBER_ID_PATTERN)
    display_name: str = Field(max_length=200)
    agent_url: str = Field(max_length=2048)
    public_url: str = Field(max_length=2048)
    location: Location = Field(default_factory=Location)
    datasets: list[Dataset] = Field(default_factory=list, max_length=10_000)
    labels: dict[str, str] = Field(default_factory=dict)
    jwks: dict[str, Any]


class EnrollmentResponse(WireModel):
    """The broker's answer: the member's state and the broker keys to pin."""

    member_id: str
    state: MemberState
    broker_id: str
    broker_jwks: dict[str, Any]
