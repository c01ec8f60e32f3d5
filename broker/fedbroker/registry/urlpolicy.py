"""Which member URLs the broker accepts: https, or plain http on loopback in development."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..errors import BadRequest

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_member_url(url: str, *, field: str, dev: bool) -> str:
    """``url`` without a trailing slash, or :class:`BadRequest` saying what is wrong with it.

    Production needs https because the agent URL carries signed requests and the
    public URL carries users' notebook tokens; ``dev`` allows http to loopback only,
    so a development flag left on cannot expose plain http to the network.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise BadRequest(f"{field} is not a valid URL", reason="invalid_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise BadRequest(f"{field} must be an absolute http(s) URL with a host", reason="invalid_url")
    if parts.username is not None or parts.password is not None:
        raise BadRequest(f"{field} must not carry credentials", reason="invalid_url")
    if parts.query or parts.fragment:
        raise BadRequest(f"{field} must not have a query or fragment", reason="invalid_url")
    if parts.scheme == "http":
        if not dev:
            raise BadRequest(
                f"{field} must use https (plain http is allowed only on loopback with --dev)",
                reason="insecure_url",
            )
        if not is_loopback(host):
            raise BadRequest(
                f"{field} uses plain http to {host!r}; even with --dev, http is allowed only on loopback",
                reason="insecure_url",
            )
    return url.rstrip("/")
