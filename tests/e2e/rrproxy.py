"""A tiny round-robin TCP proxy for the two-replica tests: each new connection goes to the next backend.

It stands in for a Kubernetes Service in front of broker replicas: a backend that refuses
the connection (a killed replica) is skipped, so clients keep being served by the others.
It runs in its own threads, so it keeps serving while a test blocks on a subprocess.
"""

from __future__ import annotations

import itertools
import selectors
import socket
import socketserver
import threading
from collections import Counter
from typing import Any

CHUNK = 65536


def _pump(client: socket.socket, backend: socket.socket) -> None:
    """Copy bytes both ways until both sides have closed their sending half."""
    peers = {client: backend, backend: client}
    open_reads = {client, backend}
    with selectors.DefaultSelector() as sel:
        for sock in open_reads:
            sel.register(sock, selectors.EVENT_READ)
        while open_reads:
            for key, _ in sel.select(timeout=60):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    data = b""
                if data:
                    try:
                        peers[src].sendall(data)
                        continue
                    except OSError:
                        pass
                sel.unregister(src)
                open_reads.discard(src)
                try:
                    peers[src].shutdown(socket.SHUT_WR)
                except OSError:
                    pass


class RoundRobinProxy:
    """Listens on 127.0.0.1:``port``; ``served`` counts connections per backend port."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self.port = port
        self.backends = backends
        self.served: Counter[int] = Counter()
        self._next = itertools.cycle(range(len(backends)))
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy.handle(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rrproxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _connect(self) -> socket.socket | None:
        for _ in self.backends:
            with self._lock:
                port = self.backends[next(self._next)]
            try:
                backend = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue  # a dead replica: the next one gets this connection
            backend.settimeout(None)
            with self._lock:
                self.served[port] += 1
            return backend
        return None

    def handle(self, client: Any) -> None:
        backend = self._connect()
        if backend is None:
            client.close()
            return
        with backend:
            _pump(client, backend)
