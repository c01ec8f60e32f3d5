"""JSON request bodies: read within the size limit, parse, validate into a wire model."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from fedproto.wire import WireModel

from .errors import BadRequest

M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request) -> bytes:
    """The raw body; larger than the app's ``client_max_size`` is a 413 (via the error middleware)."""
    return await request.read()


def parse_json(raw: bytes, model: type[M], *, from_member: bool = False) -> M:
    """``raw`` as ``model``: bad JSON or a non-object is 400; invalid fields are 400 too.

    Unknown fields are 400 in an administrator's body (a typo must not pass silently) and
    ignored in a member's document (``from_member``: the member may speak a newer minor version).
    """
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON", reason="bad_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", reason="bad_json")
    if from_member and issubclass(model, WireModel):
        return model.received(data)  # type: ignore[return-value]  # M is that WireModel
    return model.model_validate(data)  # ValidationError -> 400 invalid_body in the middleware


async def read_json(request: web.Request, model: type[M]) -> M:
    return parse_json(await read_body(request), model)
