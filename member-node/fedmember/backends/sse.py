"""Reading server-sent event streams (BinderHub's ``/build``, JupyterHub's spawn progress) as JSON events.

The member's one aiohttp-bound reader: it feeds lines to :class:`fedproto.sse.EventStreamParser`
(the framing rules both sides share). Both upstreams send ``:`` keepalive comments and may hold
the connection open after the last event that matters, so every read has a deadline (a silent
or held-open stream cannot hang a launch), and closing the response is left to the caller, who
knows which event is the last one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import aiohttp

from fedproto.sse import EventStreamParser, json_object

# A line longer than this is not an event we can use (BinderHub's longest, `ready`, is ~1 kB).
MAX_LINE_BYTES = 1 << 20


class StreamTimeout(Exception):
    """The stream's deadline passed before the next event arrived."""


class StreamEnded(Exception):
    """The upstream closed the stream (EOF) — the caller decides whether that was early."""


async def iter_sse_json(response: aiohttp.ClientResponse, *, deadline: float) -> AsyncIterator[dict[str, Any]]:
    """Yield the JSON object of each ``data:`` line until EOF or ``deadline`` (event-loop time).

    Comments, other SSE fields and events that are not JSON objects are skipped: a proxy
    that injects something odd must not end a launch that is going well.
    Raises :class:`StreamTimeout` when the deadline passes and :class:`StreamEnded` at EOF.
    """
    now = asyncio.get_running_loop().time
    parser = EventStreamParser()
    while True:
        remaining = deadline - now()
        if remaining <= 0:
            raise StreamTimeout("no terminal event before the deadline")
        try:
            # wait_for on each read keeps the timeout inside this await: a deadline spanning
            # the generator's yields would cancel the consumer's task instead of ours.
            line = await asyncio.wait_for(response.content.readline(), remaining)
        except asyncio.TimeoutError:
            raise StreamTimeout("no terminal event before the deadline") from None
        if not line:
            raise StreamEnded("stream closed by the server")
        if len(line) > MAX_LINE_BYTES:
            continue
        data = parser.feed(line)
        event = json_object(data) if data is not None else None
        if event is not None:
            yield event


def json_or_none(text: str) -> Any:
    """Parse JSON, or None when the body is not JSON (an HTML error page from a proxy)."""
    try:
        return json.loads(text)
    except ValueError:
        return None
