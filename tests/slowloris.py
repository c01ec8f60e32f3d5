"""A slowloris client for the attacker tests of the broker and the member agent (shared by both)."""

from __future__ import annotations

import asyncio
import time


async def dribble(host: str, port: int, head: bytes, step: float = 0.25) -> float:
    """Send ``head`` (a request's unfinished headers) one byte at a time, waiting up to ``step``
    seconds for the server between bytes; return how long it took the server to close the
    connection (or to take every byte, if it never did)."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), step) == b"":
                    break
            except TimeoutError:
                pass
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started
