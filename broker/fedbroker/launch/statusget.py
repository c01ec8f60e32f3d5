"""The status poll's HTTP: one small GET and a bounded answer, over kept-alive connections.

A status poll is the broker's most frequent call (1,000 members every 10 s is 100 a second),
and aiohttp's client spent about 240 us of CPU on each (header multidicts, cookie jar, tracing
hooks, timers, stream readers), as much as verifying the signed ad it fetched. A poll needs
little of that: HTTP/1.1 GET, keep-alive, TLS trusting the configured CA, the guarded resolver,
a size limit on the answer, and no redirects (a 3xx is an answer like any non-200, not followed).
This module is that and nothing more; launches and their event streams stay on aiohttp.

The caller bounds the whole exchange with a timeout; a connection interrupted by one (or by any
error) is closed, never reused. A kept-alive connection that the server closed while idle is
noticed when reused, and the GET (idempotent) is sent once more on a fresh connection.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp.abc
from yarl import URL

from fedproto.urlpolicy import ip_literal

MAX_HEAD_BYTES = 16 * 1024
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")
# An idle connection older than this is closed instead of reused: servers close theirs after a
# while (aiohttp's server after 75 s, many proxies after 60 s), and reusing one they are closing
# costs a retry. aiohttp's client used 15 s; members are polled every 10 s, so each keeps one.
IDLE_SECONDS = 15.0
# Idle connections kept per origin: one member is one origin, so this matters only when several
# members share one (behind one proxy); in-flight polls are bounded by health.concurrency anyway.
IDLE_PER_ORIGIN = 32


class HttpFailure(Exception):
    """No usable HTTP answer. ``kind``: ``connect`` (could not connect, TLS, connection lost) or
    ``protocol`` (the peer broke HTTP/1.1 or a limit)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _ClosedEarly(HttpFailure):
    """The connection ended before the first byte of the answer (maybe a kept-alive one the server
    had just closed: the request may be sent once more, on a fresh connection)."""

    def __init__(self) -> None:
        super().__init__("connect", "connection closed before an answer")


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: status, headers (names lower-cased; a repeated one keeps its last
    value), body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Parser:
    """An HTTP/1.1 response, fed bytes as they arrive. Pure: no I/O.

    Bodies are delimited by ``Content-Length``, by chunked transfer coding, or by the end of the
    connection; a response with both a length and a transfer coding is refused (RFC 9112 6.3
    calls it a smuggling risk). ``max_body`` bounds the body however it is delimited.
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buf = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self._head_done = False
        self._length: int | None = None  # None: chunked or until close
        self._chunked = False
        self._body = bytearray()
        self._pos = 0  # chunked: where the next chunk-size line starts in _buf
        self.done = False

    @property
    def started(self) -> bool:
        return bool(self._buf) or self._head_done

    def feed(self, data: bytes) -> None:
        """Take ``data``; raises :class:`HttpFailure` (protocol) for a malformed or oversized answer."""
        self._buf += data
        if not self._head_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD_BYTES:
                    raise HttpFailure("protocol", f"answer headers exceed {MAX_HEAD_BYTES} bytes")
                return
            self._head(bytes(self._buf[:end]))
            del self._buf[:end + 4]
        self._advance()

    def eof(self) -> None:
        """The connection ended: completes a body delimited by it; raises if the answer was cut short."""
        if not self.started:
            raise _ClosedEarly()
        if self._head_done and self._length is None and not self._chunked:
            self._body += self._buf
            self._buf.clear()
            self.done = True
            return
        if not self.done:
            raise HttpFailure("connect", "connection closed in the middle of the answer")

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, bytes(self._body))

    def _head(self, head: bytes) -> None:
        try:
            lines = head.decode("latin-1").split("\r\n")
            version, code = lines[0].split(" ", 2)[:2]
            if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
                raise ValueError(lines[0])
            self.status = int(code)
        except ValueError:
            raise HttpFailure("protocol", "answer is not HTTP/1.1") from None
        if self.status < 200:
            raise HttpFailure("protocol", f"unexpected interim answer HTTP {self.status}")
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[0] in " \t":
                raise HttpFailure("protocol", "malformed answer header")
            name, value = name.lower(), value.strip()
            if name == "content-length" and self.headers.get(name, value) != value:
                raise HttpFailure("protocol", "answer has two different Content-Length headers")
            self.headers[name] = value
        self._head_done = True
        connection = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        self.keep_alive = version == "HTTP/1.1" and "close" not in connection
        coding, length = self.headers.get("transfer-encoding"), self.headers.get("content-length")
        if coding is not None and length is not None:
            raise HttpFailure("protocol", "answer has both Content-Length and Transfer-Encoding")
        if self.status in (204, 304):
            self._length = 0
        elif coding is not None:
            if coding.lower() != "chunked":
                raise HttpFailure("protocol", f"unsupported transfer coding {coding[:40]!r}")
            self._chunked = True
        elif length is not None:
            if not (length.isascii() and length.isdigit()):
                raise HttpFailure("protocol", "malformed Content-Length")
            self._length = int(length)
            if self._length > self._max_body:
                raise HttpFailure("protocol", f"answer is larger than {self._max_body} bytes")
        else:
            self.keep_alive = False  # delimited by the end of the connection

    def _advance(self) -> None:
        if self._length is not None:
            if len(self._buf) >= self._length:
                self._body = self._buf[:self._length]
                if len(self._buf) > self._length:
                    self.keep_alive = False  # bytes nobody asked for: do not reuse the connection
                self.done = True
        elif self._chunked:
            self._chunks()
        elif len(self._buf) > self._max_body:
            raise HttpFailure("protocol", f"answer is larger than {self._max_body} bytes")

    def _chunks(self) -> None:
        buf = self._buf
        while not self.done:
            eol = buf.find(b"\r\n", self._pos)
            if eol < 0:
                if len(buf) - self._pos > 1024:
                    raise HttpFailure("protocol", "malformed chunk")
                return
            size_text = bytes(buf[self._pos:eol]).split(b";", 1)[0].rstrip(b" \t")
            if not _HEX.fullmatch(size_text):  # int() would also take "0x1f", "+1f" and "1_f"
                raise HttpFailure("protocol", "malformed chunk size")
            size = int(size_text, 16)
            if len(self._body) + size > self._max_body:
                raise HttpFailure("protocol", f"answer is larger than {self._max_body} bytes")
            if size == 0:  # the last chunk; then trailer lines, if any, up to an empty line
                end = buf.find(b"\r\n\r\n", eol)
                if end < 0:
                    if len(buf) - eol > MAX_HEAD_BYTES:
                        raise HttpFailure("protocol", f"answer trailers exceed {MAX_HEAD_BYTES} bytes")
                    return
                if len(buf) > end + 4:
                    self.keep_alive = False
                self.done = True
                return
            start, end = eol + 2, eol + 2 + size
            if len(buf) < end + 2:
                return
            if buf[end:end + 2] != b"\r\n":
                raise HttpFailure("protocol", "malformed chunk")
            self._body += buf[start:end]
            self._pos = end + 2


class _Connection(asyncio.Protocol):
    """One connection to an origin, answering one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: _Parser | None = None
        self._waiter: asyncio.Future[Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._waiter is None or self._waiter.done():
            self.close()  # bytes while idle: nothing asked for them, the connection is not reusable
            return
        try:
            self._parser.feed(data)
        except HttpFailure as exc:
            self._fail(exc)
            return
        if self._parser.done:
            self._waiter.set_result(self._parser.answer())

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        if self._parser is None or self._waiter is None or self._waiter.done():
            return
        try:
            self._parser.eof()
        except HttpFailure as exc:
            self._fail(exc)
            return
        self._waiter.set_result(self._parser.answer())

    def _fail(self, exc: HttpFailure) -> None:
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    async def request(self, head: bytes, max_body: int) -> Answer:
        """Send ``head`` and wait for the whole answer; a connection the answer does not leave
        reusable is closed."""
        assert self.transport is not None
        parser = self._parser = _Parser(max_body)
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        try:
            answer = await waiter
        finally:
            self._parser = self._waiter = None
        if not parser.keep_alive:
            self.close()
        return answer

    @property
    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def request_head(url: URL, headers: dict[str, str]) -> bytes:
    """The request line and headers of a GET of ``url``; refuses a line break in any part of them
    (header injection), though every part is built by the broker."""
    lines = [f"GET {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}",
             *(f"{name}: {value}" for name, value in headers.items())]
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a line break inside a request line or header")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class StatusConnections:
    """GETs over kept-alive connections, one pool of idle connections per origin."""

    def __init__(self, ssl_context: ssl.SSLContext, resolver: aiohttp.abc.AbstractResolver, connect_timeout: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ssl = ssl_context
        self._resolver = resolver
        self._connect_timeout = connect_timeout
        self._monotonic = monotonic
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._swept_at = monotonic()

    async def get(self, url: URL, headers: dict[str, str], max_body: int) -> Answer:
        """GET ``url``; raises :class:`HttpFailure` when no complete answer came back. The caller
        sets the timeout; a cancelled GET closes its connection."""
        head = request_head(url, headers)
        origin = (url.scheme, url.raw_host or "", url.port or 0)
        conn = self._reuse(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, head, max_body)
            except _ClosedEarly:
                pass  # the server closed it while idle; once more on a new connection
        return await self._exchange(origin, await self._connect(url), head, max_body)

    async def _exchange(self, origin: tuple[str, str, int], conn: _Connection, head: bytes, max_body: int) -> Answer:
        try:
            answer = await conn.request(head, max_body)
        except BaseException:
            conn.close()
            self._open.discard(conn)
            raise
        if conn.reusable:
            self._park(origin, conn)
        else:
            conn.close()
            self._open.discard(conn)
        return answer

    def _reuse(self, origin: tuple[str, str, int]) -> _Connection | None:
        now = self._monotonic()
        if now - self._swept_at > IDLE_SECONDS:
            self._sweep(now)
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
            self._open.discard(conn)
        return None

    def _sweep(self, now: float) -> None:
        """Close idle connections past their time, and forget origins left without any: a member
        no longer polled (removed, retired) must not keep a socket open."""
        self._swept_at = now
        for origin, idle in list(self._idle.items()):
            keep = [c for c in idle if c.reusable and now - c.idle_since < IDLE_SECONDS]
            for conn in idle:
                if conn not in keep:
                    conn.close()
                    self._open.discard(conn)
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    def _park(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= IDLE_PER_ORIGIN:
            conn.close()
            self._open.discard(conn)
            return
        conn.idle_since = self._monotonic()
        idle.append(conn)

    async def _connect(self, url: URL) -> _Connection:
        host, port = url.raw_host or "", url.port or 0
        tls = url.scheme == "https"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                if ip_literal(host) is not None:
                    addresses = [host.strip("[]")]
                else:  # names go through the guarded resolver, which refuses internal addresses
                    addresses = [r["host"] for r in await self._resolver.resolve(host, port, socket.AF_UNSPEC)]
                error: OSError | None = None
                for address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            _Connection, address, port, ssl=self._ssl if tls else None,
                            server_hostname=host if tls else None)
                        break
                    except OSError as exc:
                        error = exc
                else:
                    raise error or OSError(f"{host} has no address")
        except TimeoutError:
            raise HttpFailure("connect", f"connection timed out after {self._connect_timeout:g} s") from None
        except OSError as exc:  # ssl.SSLError and ConnectionError are OSErrors
            failure = HttpFailure("connect", str(exc))
            raise failure from exc
        self._open.add(conn)
        return conn

    async def close(self) -> None:
        """Close every connection, idle or not."""
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
