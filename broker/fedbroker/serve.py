"""``fedbroker serve``: run the broker until SIGTERM or SIGINT, then stop gracefully.

Slow clients are bounded below the application (:mod:`fedproto.slowclients`, which the member
agent uses too): a new connection has ``connections.header_timeout`` seconds to send its first
request's headers, and an idle keep-alive connection is closed after
``connections.keepalive_timeout``. A request being handled, such as a long launch stream, is
never cut by either.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Any, Callable
from urllib.parse import urlsplit

from aiohttp import web

from fedproto.slowclients import guard_connections

from .app import make_app
from .config import BrokerConfig, ConnectionSettings, LoggingSettings

log = logging.getLogger(__name__)


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are bounded by ``[connections]`` (:mod:`fedproto.slowclients`)."""

    def __init__(self, app: web.Application, settings: ConnectionSettings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_timeout, **kwargs)
        self._header_timeout = settings.header_timeout

    @property
    def server(self) -> Any:
        return guard_connections(super().server, self._header_timeout)


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


# The young generation's collection threshold (CPython's default is 700 allocations). A broker's heap is
# mostly long-lived member state (ads, routing facts), and each launch allocates a few hundred objects
# that die with it: at 700, every few launches paid a collection that traversed the young survivors,
# which made the tail of decision time (benchmarks/bench_routing.py, 1,000 members: p99 0.79 -> 0.32 ms)
# and of the front door's latency (benchmarks/bench_frontdoor.py: p99 83-89 -> 54-58 ms), at no cost
# in CPU per request. Garbage in cycles waits at most that many allocations longer.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """The broker process's garbage-collector setting (``fedbroker serve``; the routing benchmark too)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run(config: BrokerConfig) -> None:
    """The blocking entry point used by the CLI."""
    tune_gc()
    asyncio.run(serve(config, announce=lambda line: print(line, flush=True)))
