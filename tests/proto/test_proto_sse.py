"""The event-stream rules both sides share: framing, reading, keepalives."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from fedproto.sse import KEEPALIVE, EventStreamParser, frame, json_object, with_keepalives


def test_parser_joins_data_lines_until_a_blank_line_and_skips_the_rest() -> None:
    parser = EventStreamParser()
    lines = [b":keepalive\n", b"\n", b"event: progress\n", b"data: {\"a\":\n", b"data:  1}\r\n", b"id: 7\n", b"\r\n",
             *frame({"phase": "ready"}).splitlines(keepends=True), KEEPALIVE, b"data: tail"]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == ['{"a":\n 1}', '{"phase": "ready"}']
    assert [json_object(e) for e in events] == [{"a": 1}, {"phase": "ready"}]
    assert parser.end() == "tail" and parser.end() is None
    assert json_object("[1]") is None and json_object("not json") is None


async def test_keepalives_fill_silences_and_closing_stops_the_source() -> None:
    closed = asyncio.Event()

    async def slow() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(0.25)
            yield 2
            await asyncio.sleep(3600)
            yield 3
        finally:
            closed.set()

    seen = []
    stream = with_keepalives(slow(), 0.1)
    async for item in stream:
        seen.append(item)
        if seen.count(None) >= 4:
            break
    await stream.aclose()
    assert seen[0] == 1 and 2 in seen and seen[1:seen.index(2)] == [None] * (seen.index(2) - 1) and seen.index(2) >= 2
    assert closed.is_set()  # the source's pending step was cancelled and the source closed


async def test_keepalives_end_with_the_source() -> None:
    async def two() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    assert [x async for x in with_keepalives(two(), 5)] == ["a", "b"]
