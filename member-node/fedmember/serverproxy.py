"""The agent's front for its backend's notebook servers: ``/servers/<launch_id>/...`` on its own origin.

A ``local`` backend's servers listen on plain http on loopback ports; behind an https public URL
a browser cannot be sent there. With fronting on (``[backend] front_servers``), each server runs
with ``base_url = /servers/<launch_id>/`` and this route forwards that prefix, path unchanged, to
the server's registered loopback address: HTTP (any method, streamed both ways) and WebSockets
(kernels, terminals). The TLS key stays with the agent; the sandboxed server never sees it.

No agent-level authentication: jupyter-server checks its own token. No open proxy either: the
only destination is what the backend reports for a live launch of this agent (nothing of the
request names a host or port); an unknown or stopped launch is 404.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import AsyncIterator

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from . import appkeys

PREFIX = "/servers/"
# Per RFC 9110 7.6.1, plus the ones aiohttp sets itself for each side.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
              "Transfer-Encoding", "Upgrade", "Proxy-Connection")
)  # fmt: skip
WS_HANDSHAKE = frozenset(
    h.lower() for h in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol")
)
MAX_WS_MESSAGE = 64 * 1024**2  # notebook outputs (images) exceed aiohttp's 4 MiB default
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("server_proxy_session", aiohttp.ClientSession)


def _forward_headers(request: web.Request, *, websocket: bool) -> CIMultiDict[str]:
    """The request's headers minus hop-by-hop ones; Host is kept so jupyter-server's same-origin
    checks see the browser's origin (the server runs with allow_remote_access for this)."""
    drop = HOP_BY_HOP | {c.strip().lower() for c in request.headers.get("Connection", "").split(",")}
    if websocket:
        drop |= WS_HANDSHAKE
    return CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)


def _target(request: web.Request) -> URL:
    address = request.app[appkeys.BACKEND].server_address(request.match_info["launch_id"])
    if address is None:
        raise web.HTTPNotFound(text="no running server at this address\n")
    host, port = address
    # The raw path (still percent-encoded) goes on unchanged: the server's base_url is this prefix.
    return URL(f"http://{host}:{port}{request.raw_path}", encoded=True)


async def proxy(request: web.Request) -> web.StreamResponse:
    target = _target(request)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request, target)
    return await _http(request, target)


async def _http(request: web.Request, target: URL) -> web.StreamResponse:
    session = request.app[SESSION]
    body = request.content.iter_chunked(64 * 1024) if request.body_exists else None
    try:
        upstream = await session.request(
            request.method, target, headers=_forward_headers(request, websocket=False), data=body, allow_redirects=False
        )
    except aiohttp.ClientError:
        raise web.HTTPBadGateway(text="the notebook server did not answer\n") from None
    async with upstream:
        headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            # The server went away mid-answer: drop the connection so the browser sees it cut short.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


async def _websocket(request: web.Request, target: URL) -> web.StreamResponse:
    session = request.app[SESSION]
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    try:
        upstream = await session.ws_connect(
            target, headers=_forward_headers(request, websocket=True), protocols=protocols,
            max_msg_size=MAX_WS_MESSAGE, autoping=True,
        )  # fmt: skip
    except aiohttp.WSServerHandshakeError as exc:
        # The server's own refusal (a wrong token: 403) reaches the browser as it is.
        return web.Response(status=exc.status, text=f"{exc.message}\n")
    except aiohttp.ClientError:
        raise web.HTTPBadGateway(text="the notebook server did not answer\n") from None
    async with upstream:
        chosen = (upstream.protocol,) if upstream.protocol else ()
        browser = web.WebSocketResponse(protocols=chosen, max_msg_size=MAX_WS_MESSAGE, autoping=True)
        await browser.prepare(request)
        pumps = [asyncio.create_task(_pump(browser, upstream)), asyncio.create_task(_pump(upstream, browser))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await browser.close()
    return browser


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copy messages one way until either side closes."""
    async for msg in source:
        if sink.closed:
            return
        if msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:
            break
    with suppress(ConnectionError):
        await sink.close()


async def _session(app: web.Application) -> AsyncIterator[None]:
    # Streams and kernels live long: no total timeout, only a bound on connecting to loopback.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    app[SESSION] = aiohttp.ClientSession(timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    yield
    await app[SESSION].close()


def mount(app: web.Application) -> None:
    """Add the front route (its requests bypass the agent's broker auth: see auth.PUBLIC_PREFIXES)."""
    app.router.add_route("*", PREFIX + "{launch_id}/{tail:.*}", proxy)
    app.cleanup_ctx.append(_session)
