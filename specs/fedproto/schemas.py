"""The JSON Schemas of every wire model, generated from the models (``python -m fedproto.schemas DIR``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from .canary import CanaryResult, SloWindow
from .claims import DocumentClaims, LaunchTicketClaims, RequestTokenClaims
from .datasets import Dataset
from .enrollment import EnrollmentRequest, EnrollmentResponse
from .launch import LaunchEvent, LaunchRequest
from .location import Location
from .member import MemberRecord
from .routing import RouteDecision
from .status import StatusAd

SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "status-ad": StatusAd,
    "launch-request": LaunchRequest,
    "launch-event": LaunchEvent,
    "enrollment-request": EnrollmentRequest,
    "enrollment-response": EnrollmentResponse,
    "route-decision": RouteDecision,
    "member-record": MemberRecord,
    "dataset": Dataset,
    "location": Location,
    "request-token-claims": RequestTokenClaims,
    "document-claims": DocumentClaims,
    "launch-ticket-claims": LaunchTicketClaims,
    "canary-result": CanaryResult,
    "slo-window": SloWindow,
}


def render_all() -> dict[str, str]:
    """File name -> schema text, deterministic so a test can compare it with the files."""
    out = {}
    for name, model in SCHEMA_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.json", **schema}
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("specs/schemas")
    for path in write_all(target):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
