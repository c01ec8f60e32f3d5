"""The production path on loopback: a private CA, https everywhere, real broker and agent processes.

Nothing here runs in development mode: the broker and agents serve https with certificates
from a CA generated per test module (``cryptography``), every client trusts that CA through
the one documented setting (``ca_bundle``, ``--ca-bundle``), and loopback agent URLs and
repositories are opened with the operator allow-lists (``agent_url_allow``, ``fetch_allow``),
as a site on a private network would.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BIN = Path(sys.executable).parent
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- certificates -----------------------------------------------------------------------------

@dataclass
class CA:
    """A private certificate authority that issues loopback server certificates."""

    directory: Path
    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def bundle(self) -> Path:
        return self.directory / f"{self.name}-ca.pem"

    def issue(self, name: str) -> tuple[Path, Path]:
        """A server certificate for 127.0.0.1 and localhost: (cert chain file, key file)."""
        assert self.cert is not None
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return cert_file, key_file

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.bundle))


# -- repositories over https ----------------------------------------------------------------

def bare_repo(root: Path, name: str, files: dict[str, str]) -> str:
    """A bare repository ``root/name.git`` that git's dumb http protocol can clone; its path."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    for rel, text in files.items():
        (work / rel).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *args], cwd=work, env=GIT_ENV, check=True)
    bare = root / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], env=GIT_ENV, check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, env=GIT_ENV, check=True)
    return f"/{name}.git"


class HttpsGitServer:
    """Serves a directory of bare repositories over https (git's dumb protocol), in a thread."""

    def __init__(self, root: Path, cert: tuple[Path, Path]) -> None:
        handler = lambda *a, **kw: _QuietHandler(*a, directory=str(root), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# -- processes --------------------------------------------------------------------------------

@dataclass
class Served:
    """A ``fedbroker serve`` or ``fedmember serve`` process and the URL it announced."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def serve(argv: list[str], log: Path, expect: str, timeout: float = 60.0) -> Served:
    """Start ``argv``; wait for its first stdout line, ``<expect> https://...``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=out)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    ready = selector.select(timeout)
    selector.close()
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.startswith(expect):
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise AssertionError(f"{argv[0]} did not start ({line!r}): {log.read_text()[-3000:]}")
    return Served(proc, line.rsplit(" ", 1)[1], log)


def cli(tool: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr


def must(tool: str, *args: str, env: dict[str, str] | None = None) -> str:
    code, out, err = cli(tool, *args, env=env)
    assert code == 0, f"{tool} {' '.join(args)} -> {code}\n{out}\n{err}"
    return out


def edit_toml(path: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` (one level deep per table) into a TOML file."""
    data = tomllib.loads(path.read_text())
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(tomli_w.dumps(data))
