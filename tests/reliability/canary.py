"""A loopback listener that records every connection: the target an SSRF attack must never reach."""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class Canary:
    """A TCP listener on 127.0.0.1 that accepts, records the peer, and closes; in its own thread.

    Used as a context manager. ``hits`` counts connections; an attack passes when it stays 0.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.hits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="canary", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            conn.close()

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def free_port() -> int:
    """A port nothing listens on (bound and released at once): the "closed port" of a port scan."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
