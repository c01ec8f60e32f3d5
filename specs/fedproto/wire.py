"""The base of every wire model: frozen, and unknown fields are an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """A message on the wire. Unknown fields are rejected so typos and forgeries fail loudly."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
