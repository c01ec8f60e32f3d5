"""JSON request bodies: read within the size limit, parse, validate into a wire model."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from fedproto.wire import WireModel

from .errors import BadRequest

M = TypeVar("M", bound=BaseModel)

# No wire document nests deeper than a handful of levels; 400 leaves room and stops a body of
# 100,000 brackets from reaching the recursive parser (a RecursionError, a 500) at all.
MAX_JSON_DEPTH = 400
# A JSON string (unrolled: no per-character alternation), and every byte that is not a bracket.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep ``raw``'s arrays and objects nest (brackets inside strings do not count); stops
    counting past ``limit``. Malformed input is the parser's to refuse. Cheap: a body with fewer
    opening brackets than ``limit`` cannot be too deep and is not scanned."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    deepest = 0
    for depth in accumulate(1 if c in b"[{" else -1 for c in brackets):
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


async def read_body(request: web.Request) -> bytes:
    """The raw body; larger than the app's ``client_max_size`` is a 413 (via the error middleware)."""
    return await request.read()


def parse_json(raw: bytes, model: type[M], *, from_member: bool = False) -> M:
    """``raw`` as ``model``: bad JSON or a non-object is 400; invalid fields are 400 too.

    Unknown fields are 400 in an administrator's body (a typo must not pass silently) and
    ignored in a member's document (``from_member``: the member may speak a newer minor version).
    """
    if nesting_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels", reason="too_deep")
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the request body is not valid JSON", reason="bad_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", reason="bad_json")
    if from_member and issubclass(model, WireModel):
        return model.received(data)  # type: ignore[return-value]  # M is that WireModel
    return model.model_validate(data)  # ValidationError -> 400 invalid_body in the middleware


async def read_json(request: web.Request, model: type[M]) -> M:
    return parse_json(await read_body(request), model)
