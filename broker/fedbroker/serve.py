"""``fedbroker serve``: run the broker until SIGTERM or SIGINT, then stop gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from aiohttp import web

from .app import make_app
from .config import BrokerConfig

log = logging.getLogger(__name__)


def _listening_url(runner: web.AppRunner, host: str, scheme: str = "http") -> str:
    # With port 0 the OS picks the port; report the one actually bound.
    address = runner.addresses[0]
    port = address[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def serve(config: BrokerConfig, announce: Callable[[str], None] = print) -> None:
    """Start the app on ``config.host:config.port``; return after a signal asked it to stop."""
    ssl_context = config.server_ssl()  # before anything starts: a bad certificate is a config error
    app = make_app(config)
    runner = web.AppRunner(app, handle_signals=False)
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
        await stop.wait()
        log.info("stopping: finishing open requests")
    finally:
        await runner.cleanup()


def run(config: BrokerConfig) -> None:
    """The blocking entry point used by the CLI."""
    asyncio.run(serve(config, announce=lambda line: print(line, flush=True)))
