"""Outbound TLS: one CA setting for every client, and failure reasons a person can act on.

Every outbound TLS client of the federation (broker to agents, CLI to broker, agent to
broker, agent to BinderHub or JupyterHub, and git inside the agent) trusts the same
thing: the CA bundle named by the ``ca_bundle`` setting, or the ``FEDERATION_CA_BUNDLE``
environment variable for the command-line tools, or else the system store (which
honours ``SSL_CERT_FILE``). A private CA is therefore one file in one setting.

Connection and TLS failures are the member's or the infrastructure's trouble, never the
repository's: :func:`describe_failure` turns one into a short reason ("certificate verify
failed: self-signed certificate in certificate chain") for logs, the status page and the CLI.
"""

from __future__ import annotations

import os
import re
import ssl
from functools import lru_cache
from pathlib import Path

CA_BUNDLE_ENV = "FEDERATION_CA_BUNDLE"


class CABundleError(ValueError):
    """A configured CA bundle that cannot be used; the message names the file."""


def resolve_ca_bundle(configured: str | None = None, *, base: Path | None = None) -> str | None:
    """The CA bundle to trust: ``configured`` (relative to ``base``), else the env variable, else None (system)."""
    value = configured or os.environ.get(CA_BUNDLE_ENV) or None
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise CABundleError(f"CA bundle {str(path)!r} does not exist or is not a file")
    return str(path.resolve())


@lru_cache(maxsize=16)
def _context(ca_bundle: str | None, mtime: int) -> ssl.SSLContext:
    del mtime  # part of the cache key only: a replaced bundle is read again
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise CABundleError(f"cannot load CA bundle {ca_bundle!r}: {exc}") from exc


def client_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context that trusts ``ca_bundle`` (a PEM file), or the system store when None."""
    mtime = os.stat(ca_bundle).st_mtime_ns if ca_bundle else 0
    return _context(ca_bundle, mtime)


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context for ``cert_file`` (PEM chain) and ``key_file``; TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise CABundleError(f"cannot load certificate {cert_file!r} with key {key_file!r}: {exc}") from exc
    return context


def git_env(ca_bundle: str | None) -> dict[str, str]:
    """Environment that makes git trust the same CA (git reads neither SSL_CERT_FILE nor our setting)."""
    return {"GIT_SSL_CAINFO": ca_bundle} if ca_bundle else {}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop(0)
        if cur is None or any(cur is s for s in seen) or len(seen) > 8:
            continue
        seen.append(cur)
        # aiohttp keeps the underlying error on attributes rather than __cause__.
        todo += [getattr(cur, "certificate_error", None), getattr(cur, "os_error", None), cur.__cause__, cur.__context__]
    return seen


def describe_failure(exc: BaseException) -> str:
    """A short human reason for a connection failure, naming TLS verification problems as such."""
    chain = _chain(exc)
    # aiohttp's ClientConnectorCertificateError is itself an ssl.CertificateError but keeps the
    # details on the ssl error it wraps: take the first that has them.
    verify = [c for c in chain if isinstance(c, ssl.SSLCertVerificationError)]
    if verify:
        detail = next((d for c in verify if (d := getattr(c, "verify_message", None) or getattr(c, "reason", None))),
                      "unknown reason")
        return f"certificate verify failed: {detail}"
    for cur in chain:
        if isinstance(cur, ssl.SSLError):
            return f"TLS error: {cur.reason or cur.__class__.__name__}"
    for cur in _chain(exc):
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, TimeoutError):
            return "connection timed out"
    for cur in _chain(exc):
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror
    return exc.__class__.__name__


_GIT_HTTP_STATUS = re.compile(r"returned error: (\d{3})")

# git's own words for transport trouble: never the repository's fault.
GIT_INFRASTRUCTURE_ERRORS = (
    "SSL certificate problem",
    "server certificate verification failed",
    "unable to access",
    "Could not resolve host",
    "Failed to connect",
    "Connection refused",
    "Connection timed out",
    "gnutls_handshake",
    "SSL_ERROR",
    "TLS",
)


def is_git_infrastructure_error(text: str) -> bool:
    """Whether a git error line is about reaching the server (TLS, DNS, connection), not about the repo."""
    http = _GIT_HTTP_STATUS.search(text)
    if http is not None:  # the server answered: 4xx is about the repo, 5xx about the server
        return int(http.group(1)) >= 500
    if "not found" in text.lower():
        return False
    return any(marker in text for marker in GIT_INFRASTRUCTURE_ERRORS)
