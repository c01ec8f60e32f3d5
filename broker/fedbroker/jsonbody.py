"""JSON request bodies: read within the size limit, parse, validate into a wire model."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from .errors import BadRequest

M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request) -> bytes:
    """The raw body; larger than the app's ``client_max_size`` is a 413 (via the error middleware)."""
    return await request.read()


def parse_json(raw: bytes, model: type[M]) -> M:
    """``raw`` as ``model``: bad JSON or a non-object is 400; unknown or invalid fields are 400 too."""
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON", reason="bad_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", reason="bad_json")
    return model.model_validate(data)  # ValidationError -> 400 invalid_body in the middleware


async def read_json(request: web.Request, model: type[M]) -> M:
    return parse_json(await read_body(request), model)
