"""Slow clients bounded below the application, for every server of the federation.

A public server (the broker, and a member agent that browsers reach for ticketed launches and
fronted servers) must not let a client hold a connection open by sending a request's headers one
byte at a time (slowloris): a new connection has ``header_timeout`` seconds to finish its first
request's headers (here: :class:`HeaderDeadline`, a plain asyncio protocol wrapper, as this
package imports no aiohttp), and an idle keep-alive connection is closed after the server's
keep-alive timeout (aiohttp's own timer, which also bounds the next request's headers). A request
being handled, such as a long launch stream or a websocket, is never cut by either. Each server's
``AppRunner`` hands its protocol factory to :func:`guard_connections`.
"""

from __future__ import annotations

import asyncio
from typing import Any

_END_OF_HEADERS = b"\r\n\r\n"


class HeaderDeadline(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol; closes the connection if the first request's
    headers are not complete within ``timeout`` seconds. Everything else is passed through."""

    def __init__(self, inner: asyncio.Protocol, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _GuardedFactory:
    """aiohttp's ``Server`` (the protocol factory), each protocol wrapped in :class:`HeaderDeadline`."""

    def __init__(self, server: Any, timeout: float) -> None:
        self._server = server
        self._timeout = timeout

    def __call__(self) -> HeaderDeadline:
        return HeaderDeadline(self._server(), self._timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def guard_connections(factory: Any, header_timeout: float) -> Any:
    """A server's protocol factory (aiohttp's ``AppRunner.server``) with every connection wrapped in
    :class:`HeaderDeadline`; None stays None (a runner not set up yet)."""
    return None if factory is None else _GuardedFactory(factory, header_timeout)
