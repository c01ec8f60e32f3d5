"""Launch requests and BinderHub-compatible launch events (framed by :mod:`fedproto.sse`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .datasets import normalise_dataset_id
from .sse import KEEPALIVE as KEEPALIVE  # re-exported: older importers  # noqa: F401
from .sse import frame
from .sse import parse_sse_data as parse_sse_data  # re-exported: older importers  # noqa: F401
from .wire import WireModel

# BinderHub's phases, plus the build-pod phases it passes through (Pending/Running/Succeed/Building).
Phase = Literal[
    "waiting",
    "fetching",
    "building",
    "pushing",
    "built",
    "launching",
    "ready",
    "failed",
    "Pending",
    "Running",
    "Succeed",
    "Building",
    "Failed",
    "Unknown",
]
TERMINAL_PHASES = frozenset({"ready", "failed"})
BUILD_TERMINAL_PHASES = frozenset({"built", "failed"})
MAX_DATASETS_PER_LAUNCH = 16


class LaunchRequest(WireModel):
    """What the broker asks a member to build and launch (or only build)."""

    provider: str = Field(max_length=32)
    spec: str = Field(max_length=1024)
    data: list[str] = Field(default_factory=list, max_length=MAX_DATASETS_PER_LAUNCH)
    launch_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")
    decision_id: str | None = Field(default=None, max_length=64)
    client_ip: str | None = Field(default=None, max_length=64)
    origin: str | None = Field(default=None, max_length=512, description="Browser origin the server must accept.")

    def needed_datasets(self) -> list[str]:
        return [normalise_dataset_id(d) for d in self.data]


class LaunchEvent(WireModel):
    """One event of BinderHub's ``/build`` stream. Optional fields are omitted when unset."""

    # Events relayed from a BinderHub may carry fields we do not know yet; keep them.
    model_config = ConfigDict(frozen=True, extra="allow")

    phase: Phase
    message: str = ""
    status_code: int | None = None
    imageName: str | None = None
    image: str | None = None
    url: str | None = None
    token: str | None = None
    repo_url: str | None = None
    binder_ref_url: str | None = None
    binder_launch_host: str | None = None
    binder_request: str | None = None
    binder_persistent_request: str | None = None
    binder_client_ip: str | None = None
    member: str | None = Field(default=None, description="The member serving this launch (added by the broker).")
    decision: str | None = Field(default=None, description="The routing decision id (on `ready`).")
    launch_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def sse(self) -> bytes:
        """Framed as BinderHub frames it: an unnamed event, one ``data:`` line."""
        return frame(self.to_json())
