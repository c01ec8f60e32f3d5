"""Canary results and the federation SLO, as ``GET /api/v1/federation`` shows them.

A canary is a real launch the broker makes on a member to prove it can serve (FEDERATION.md,
"Canaries"); the SLO is the share of launches that reached ``ready`` and their time-to-ready
percentiles over a window. Both are read-only views the broker computes; members never send them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .wire import WireModel

# How one canary ended: the enum of the `fedbroker_canaries` metric's `outcome` label too.
CanaryOutcome = Literal["ok", "launch_failed", "check_failed", "timeout", "error"]
CANARY_OUTCOMES: tuple[str, ...] = ("ok", "launch_failed", "check_failed", "timeout", "error")


class CanaryResult(WireModel):
    """One canary launch on one member: whether it proved the member, when, and how long it took."""

    ok: bool = Field(description="The launch reached `ready` and the server answered with its token.")
    at: float = Field(description="When the canary ended (broker clock, seconds since the epoch).")
    outcome: CanaryOutcome = Field(description="`ok`, or which step failed.")
    time_to_ready: float | None = Field(
        default=None, ge=0, description="Seconds from the launch request to `ready` (null when it never got there)."
    )
    build_seconds: float | None = Field(
        default=None, ge=0, description="The build part: seconds from the request to `built` (fetch and build)."
    )
    launch_seconds: float | None = Field(
        default=None, ge=0, description="The launch part: seconds from `built` to `ready` (starting the server)."
    )
    reason: str | None = Field(default=None, max_length=500, description="Why it failed; null when ok.")


class SloWindow(WireModel):
    """Launch outcomes over one window: how many reached `ready`, and how fast."""

    window: Literal["1h", "24h"]
    launches: int = Field(ge=0, description="Launches that ended (ready, or failed through the member's fault).")
    ready: int = Field(ge=0, description="Of those, the ones that reached `ready`.")
    ready_share: float | None = Field(default=None, ge=0, le=1, description="ready / launches; null without launches.")
    p50_time_to_ready: float | None = Field(default=None, ge=0, description="Median seconds to `ready`.")
    p95_time_to_ready: float | None = Field(default=None, ge=0, description="95th percentile seconds to `ready`.")
