"""Server-sent event streams, as BinderHub frames them: writing, reading and keepalives.

Both sides speak it: the member writes launch events and reads BinderHub's and JupyterHub's
streams; the broker reads the member's stream and writes the client's. The rules live here,
once; each side keeps one small aiohttp-bound loop that feeds lines in (reading) or writes
frames out (writing), because this package does no network I/O.

* An event is unnamed, one ``data: <json>`` line and a blank line (:func:`frame`).
* While nothing happens, a ``:keepalive`` comment flows every few seconds (:data:`KEEPALIVE`,
  :func:`with_keepalives`), so proxies and clients do not time the stream out.
* A reader (:class:`EventStreamParser`) joins ``data:`` lines until a blank line, as the SSE
  standard says, and skips comments and other fields.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any, AsyncIterator, TypeVar

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies must not buffer the stream
}
KEEPALIVE = b":keepalive\n\n"

T = TypeVar("T")


def frame(data: dict[str, Any]) -> bytes:
    """One unnamed event whose data is ``data`` as JSON, on one line."""
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class EventStreamParser:
    """Feed it a stream's lines; it returns each event's data (its ``data:`` lines joined) when the
    blank line that ends the event arrives. Comments, ``event:``/``id:``/``retry:`` are skipped."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: bytes | str) -> str | None:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        text = text.rstrip("\r\n")
        if text.startswith("data:"):
            value = text[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
            return None
        if text == "" and self._data:
            data, self._data = "\n".join(self._data), []
            return data
        return None

    def end(self) -> str | None:
        """At end of stream: the data of an event the stream did not end with a blank line."""
        data, self._data = ("\n".join(self._data) if self._data else None), []
        return data


def json_object(data: str) -> dict[str, Any] | None:
    """An event's data as a JSON object, or None when it is not one."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_sse_data(line: bytes | str) -> dict[str, Any] | None:
    """The JSON object of one ``data:`` line, or None for comments, blank lines and other fields.

    For streams whose every event is one line (BinderHub's, ours); :class:`EventStreamParser`
    reads any stream. Raises ValueError when the data is not JSON.
    """
    text = line.decode() if isinstance(line, bytes) else line
    text = text.rstrip("\r\n")
    if not text.startswith("data:"):
        return None
    value = json.loads(text[5:].lstrip(" "))
    return value if isinstance(value, dict) else None


async def _next(source: AsyncIterator[T]) -> T:
    return await anext(source)


async def with_keepalives(source: AsyncIterator[T], interval: float) -> AsyncIterator[T | None]:
    """``source``'s items, and None whenever ``interval`` seconds pass without one (time for a
    :data:`KEEPALIVE`). Closing this closes ``source``; a pending read is cancelled first."""
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(_next(source))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:  # the reader left mid-wait: stop the source's step before closing it
            pending.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
