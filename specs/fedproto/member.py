"""A member as the registry knows it: its state and public record."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field

from .datasets import Dataset
from .location import Location
from .wire import WireModel

MEMBER_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


class MemberState(str, Enum):
    """Lifecycle: pending -> active <-> draining -> retired; disabled (quarantine) from any state."""

    pending = "pending"
    active = "active"
    draining = "draining"
    retired = "retired"
    disabled = "disabled"


class MemberRecord(WireModel):
    """The registry's record of one member, as the admin API shows it."""

    id: str = Field(pattern=MEMBER_ID_PATTERN, description="Stable member id (DNS label).")
    display_name: str = Field(max_length=200)
    agent_url: str = Field(max_length=2048, description="Where the broker calls the member's agent.")
    public_url: str = Field(max_length=2048, description="Where browsers reach the member's servers.")
    state: MemberState
    weight: float = Field(default=1.0, ge=0, le=1000, description="Admin weight; 0 takes no new launches.")
    location: Location = Field(default_factory=Location)
    datasets: list[Dataset] = Field(default_factory=list, max_length=10_000)
    labels: dict[str, str] = Field(default_factory=dict)
    canary: bool = Field(default=True, description="Whether the broker runs canary launches on this member.")
    jwks: dict[str, Any] = Field(description="The member's public keys (JWKS).")
    max_capacity: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="Admin-set cap on the capacity routing believes from the member's ads (None: no cap).",
    )
    created_at: float
    updated_at: float
