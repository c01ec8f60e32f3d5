"""``fedbroker serve``: run the broker until SIGTERM or SIGINT, then stop gracefully.

Slow clients are bounded here, below the application: a new connection has
``connections.header_timeout`` seconds to send its first request's headers (a slowloris
dribbling one byte at a time is cut off), and an idle keep-alive connection is closed after
``connections.keepalive_timeout`` (aiohttp's own timer, which also bounds the next request's
headers). A request being handled, such as a long launch stream, is never cut by either.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Callable
from urllib.parse import urlsplit

from aiohttp import web

from .app import make_app
from .config import BrokerConfig, ConnectionSettings, LoggingSettings

log = logging.getLogger(__name__)
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


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose sites accept connections through :class:`HeaderDeadline`."""

    def __init__(self, app: web.Application, settings: ConnectionSettings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_timeout, **kwargs)
        self._header_timeout = settings.header_timeout

    @property
    def server(self) -> Any:
        inner = super().server
        return None if inner is None else _GuardedFactory(inner, self._header_timeout)


def _listening_url(runner: web.AppRunner, host: str, scheme: str = "http") -> str:
    # With port 0 the OS picks the port; report the one actually bound.
    address = runner.addresses[0]
    port = address[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def configure_logging(settings: LoggingSettings) -> None:
    """The process's log level and format, and whether decision lines are written."""
    logging.basicConfig(level=settings.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("fedbroker.decisions").setLevel(logging.NOTSET if settings.decisions else logging.WARNING)


def access_log_options(settings: LoggingSettings) -> dict[str, Any]:
    """The runner's access-log arguments: none at all when it is off (aiohttp then skips the work)."""
    if not settings.access_log:
        return {"access_log": None}
    return {"access_log_format": settings.access_log_format}


_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


def with_public_url(config: BrokerConfig, scheme: str = "http") -> BrokerConfig:
    """``public_url`` left at its default follows the listening address, so ``binder_launch_host``
    and every link name the port the broker is really on (``--port 9000`` used to say 8585)."""
    if "public_url" in config.model_fields_set or config.port == 0:
        return config
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    shown = f"[{host}]" if ":" in host else host
    return config.model_copy(update={"public_url": f"{scheme}://{shown}:{config.port}"})


def public_url_warning(public_url: str, host: str, port: int) -> str | None:
    """Why ``public_url`` looks wrong for a broker listening on ``host:port``, if it does: it names
    this machine but another port (behind a proxy, public_url names the proxy and no warning is due)."""
    parts = urlsplit(public_url)
    if parts.hostname not in _LOCAL_HOSTS | {host}:
        return None
    named = parts.port or (443 if parts.scheme == "https" else 80)
    if named == port:
        return None
    return (f"public_url {public_url} names port {named}, but the broker listens on {host}:{port}; links and "
            f"binder_launch_host will point there. Set public_url to the URL users reach this broker at.")


async def serve(config: BrokerConfig, announce: Callable[[str], None] = print) -> None:
    """Start the app on ``config.host:config.port``; return after a signal asked it to stop."""
    ssl_context = config.server_ssl()  # before anything starts: a bad certificate is a config error
    config = with_public_url(config, "https" if ssl_context else "http")
    app = make_app(config)
    runner = GuardedRunner(app, config.connections, handle_signals=False, **access_log_options(config.logging))
    await runner.setup()  # runs the cleanup_ctx startups: registry open + migrations, etc.
    try:
        site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        scheme = "https" if ssl_context else "http"
        announce(f"fedbroker listening on {_listening_url(runner, config.host, scheme)}")
        warning = public_url_warning(config.public_url, config.host, runner.addresses[0][1])
        if warning is not None:
            log.warning("%s", warning)
            announce(f"warning: {warning}")
        await stop.wait()
        log.info("stopping: finishing open requests")
    finally:
        await runner.cleanup()


def run(config: BrokerConfig) -> None:
    """The blocking entry point used by the CLI."""
    asyncio.run(serve(config, announce=lambda line: print(line, flush=True)))
