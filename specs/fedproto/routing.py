"""Routing decisions on the wire: ranked candidates with their cost parts and reasons."""

from __future__ import annotations

from pydantic import Field

from .wire import WireModel


class Candidate(WireModel):
    """One member considered for a launch. Lower ``cost`` is better."""

    member_id: str
    rank: int = Field(description="1 for the chosen member; unroutable candidates come last.")
    routable: bool
    cost: float | None = Field(description="Total estimated cost (seconds-equivalent); None when unroutable.")
    parts: dict[str, float] = Field(default_factory=dict, description="The cost's named parts.")
    reason: str = Field(description="Why it won, lost, or could not be used.")


class RouteDecision(WireModel):
    """The ranked outcome of routing one launch request."""

    decision_id: str
    provider: str
    spec: str
    repo_key: str
    data: list[str] = Field(default_factory=list)
    client_region: str | None = None
    candidates: list[Candidate]

    @property
    def chosen(self) -> str | None:
        for c in self.candidates:
            if c.routable:
                return c.member_id
        return None

    def routable_ids(self) -> list[str]:
        return [c.member_id for c in self.candidates if c.routable]
