"""The status poll's HTTP client: answers framed as HTTP/1.1 frames them, connections kept alive and
never reused when in doubt, TLS to the configured CA, the guarded resolver, no redirects, limits."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from yarl import URL

from fedproto.tls import client_context
from fedproto.urlpolicy import AddressPolicy

from fedbroker.launch.memberclient import GuardedResolver
from fedbroker.launch.statusget import MAX_HEAD_BYTES, HttpFailure, StatusConnections, _Parser, request_head

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from tlskit import CA  # noqa: E402  (tests/e2e: the private-CA helper)

BODY = b'{"signed": "x"}'


def _parse(raw: bytes, max_body: int = 1000, *, step: int | None = None, eof: bool = False) -> _Parser:
    parser = _Parser(max_body)
    for i in range(0, len(raw), step or len(raw) or 1):
        parser.feed(raw[i:i + (step or len(raw))])
    if eof:
        parser.eof()
    return parser


FRAMED = [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n" + BODY, False, True, id="content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"sig\r\na\r\nned\": \"x\"}\r\n"
                 b"0\r\n\r\n", False, True, id="chunked"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nf\r\n" + BODY + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
                 False, True, id="chunked-with-trailer"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY, True, False, id="until-close"),
    pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 15\r\n\r\n" + BODY, False, False,
                 id="connection-close"),
    pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\n" + BODY, False, False, id="http-1.0"),
]


@pytest.mark.parametrize(("raw", "eof", "keep_alive"), FRAMED)
@pytest.mark.parametrize("step", [None, 1, 7], ids=["whole", "byte-by-byte", "7-bytes"])
def test_answers_are_framed_however_they_arrive(raw: bytes, eof: bool, keep_alive: bool, step: int | None) -> None:
    parser = _parse(raw, step=step, eof=eof)
    assert parser.done and parser.answer().body.replace(b"\r\n", b"") == BODY.replace(b"\r\n", b"")
    assert parser.answer().status == 200 and parser.keep_alive is keep_alive


def test_a_no_content_answer_has_no_body_and_headers_are_lower_cased() -> None:
    parser = _parse(b"HTTP/1.1 204 No Content\r\nFederation-Protocol: 1.0\r\n\r\n")
    assert parser.done and parser.answer().body == b"" and parser.answer().headers == {"federation-protocol": "1.0"}


REFUSED = [
    pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP/1.1", id="not-http"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", "interim", id="interim-answer"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", "malformed answer header", id="folded-header"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "both",
                 id="length-and-coding"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "transfer coding", id="unasked-coding"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length", id="negative-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n", "larger than 1000", id="length-over-limit"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", "larger than 1000",
                 id="chunk-over-limit"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size", id="bad-chunk-size"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "chunk size", id="prefixed-chunk-size"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "Content-Length", id="non-ascii-digit-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "two different",
                 id="two-lengths"),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, "larger than 1000", id="until-close-over-limit"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES, "headers exceed", id="endless-headers"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_malformed_or_oversized_answers_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(HttpFailure, match=reason) as info:
        _parse(raw)
    assert info.value.kind == "protocol"


def test_an_answer_cut_short_is_a_connection_failure() -> None:
    with pytest.raises(HttpFailure, match="middle of the answer"):
        _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{", eof=True)


def test_request_heads_refuse_line_breaks() -> None:
    head = request_head(URL("http://127.0.0.1:8080/m1/api/v1/status?a=1"), {"Authorization": "Bearer t"})
    assert head == b"GET /m1/api/v1/status?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer t\r\n\r\n"
    with pytest.raises(ValueError):
        request_head(URL("http://127.0.0.1/"), {"X": "a\r\nInjected: 1"})


# -- against real servers ----------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def connections() -> AsyncIterator[StatusConnections]:
    resolver = GuardedResolver(AddressPolicy.of(dev=True))
    pool = StatusConnections(client_context(None), resolver, connect_timeout=2.0)
    yield pool
    await pool.close()
    await resolver.close()


async def _serve(aiohttp_server: Any, routes: dict[str, Handler], **kwargs: Any) -> Any:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return await aiohttp_server(app, **kwargs)


async def test_a_connection_is_kept_alive_between_polls(aiohttp_server: Any, connections: StatusConnections) -> None:
    peers: list[Any] = []

    async def status(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"signed": "x"}, headers={"Federation-Protocol": "1.0"})

    server = await _serve(aiohttp_server, {"/s": status})
    for _ in range(3):
        answer = await connections.get(server.make_url("/s"), {}, 1000)
        assert answer.status == 200 and answer.body == b'{"signed": "x"}'
        assert answer.headers["federation-protocol"] == "1.0"
    assert len(peers) == 3 and len(set(peers)) == 1


async def test_redirects_are_answers_not_followed(aiohttp_server: Any, connections: StatusConnections) -> None:
    followed: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.json_response({})

    server = await _serve(aiohttp_server, {"/s": moved, "/elsewhere": elsewhere})
    answer = await connections.get(server.make_url("/s"), {}, 1000)
    assert answer.status == 302 and followed == []


async def _raw_server(answer: Callable[[int], bytes]) -> tuple[asyncio.Server, list[int]]:
    """A server that answers each request with ``answer(n)`` and then closes the connection
    without saying so (as a server whose idle timeout struck would)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(len(connections)))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), connections


async def test_a_kept_alive_connection_the_server_closed_is_replaced(connections: StatusConnections) -> None:
    server, seen = await _raw_server(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
    async with server:
        url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/s")
        assert (await connections.get(url, {}, 100)).body == b"1"
        await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        assert (await connections.get(url, {}, 100)).body == b"2"
        assert len(seen) == 2


async def test_a_timed_out_poll_closes_its_connection(connections: StatusConnections) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/s")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await connections.get(url, {}, 100)
        assert not connections._open and not any(connections._idle.values())


async def test_names_resolving_inside_are_refused() -> None:
    resolver = GuardedResolver(AddressPolicy.of(dev=False))
    pool = StatusConnections(client_context(None), resolver, connect_timeout=2.0)
    with pytest.raises(HttpFailure, match="loopback") as info:
        await pool.get(URL("https://localhost:1/s"), {}, 100)
    assert info.value.kind == "connect"
    await pool.close()
    await resolver.close()


async def test_tls_trusts_the_configured_ca_and_nothing_else(aiohttp_server: Any, tmp_path: Path) -> None:
    ca, rogue = CA(tmp_path / "ca", "federation"), CA(tmp_path / "rogue", "rogue")
    cert, key = ca.issue("member")
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"signed": "x"})

    server = await _serve(aiohttp_server, {"/s": status}, ssl=server_ssl)
    url = URL(f"https://localhost:{server.port}/s")
    resolver = GuardedResolver(AddressPolicy.of(dev=True))
    trusting = StatusConnections(client_context(str(ca.bundle)), resolver, connect_timeout=2.0)
    assert (await trusting.get(url, {}, 1000)).status == 200
    assert (await trusting.get(url.with_host("127.0.0.1"), {}, 1000)).status == 200
    await trusting.close()
    other = StatusConnections(client_context(str(rogue.bundle)), resolver, connect_timeout=2.0)
    with pytest.raises(HttpFailure) as info:
        await other.get(url, {}, 1000)
    assert info.value.kind == "connect" and isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    await other.close()
    await resolver.close()


async def test_idle_connections_past_their_time_are_closed(aiohttp_server: Any) -> None:
    now = [0.0]

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"signed": "x"})

    server = await _serve(aiohttp_server, {"/a": status})
    resolver = GuardedResolver(AddressPolicy.of(dev=True))
    pool = StatusConnections(client_context(None), resolver, connect_timeout=2.0, monotonic=lambda: now[0])
    await pool.get(server.make_url("/a"), {}, 1000)
    assert len(pool._open) == 1
    now[0] += 16  # past IDLE_SECONDS: the next poll of any origin sweeps it
    await pool.get(URL(str(server.make_url("/a")).replace("127.0.0.1", "localhost")), {}, 1000)
    assert len(pool._open) == 1 and list(pool._idle) == [("http", "localhost", server.port)]
    await pool.close()
    await resolver.close()
