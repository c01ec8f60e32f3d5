"""Which URLs the federation calls or hands out: one rule for the broker and the member.

Two checks, both used on each side:

* **Transport** (:func:`check_service_url`): https, or plain http to a loopback host only
  in development mode, so a development flag left on cannot send signed requests or
  notebook tokens over plain http to the network.
* **Destination** (:class:`AddressPolicy`, :func:`check_destination`): outside development
  mode, a host fetched on someone else's say-so (a repository URL from a client, an agent
  URL from an enrolling member or an admin) must resolve only to public addresses, so the
  federation cannot be aimed at its own loopback, the cloud metadata service
  (169.254.169.254) or the site's private network (server-side request forgery). An
  operator allow-list opens exceptions. Nothing is contacted before the check, so an
  attacker cannot tell open ports from closed ones by the answer.

Pure apart from name resolution, which the caller passes in (``loop.getaddrinfo`` in
production), keeping this package free of network I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from .errors import ProtocolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Only these names are loopback by name; anything else must be an IP literal. A prefix
# test ("127.") would take 127.example.com, which anyone can point anywhere, for loopback.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class UrlPolicyError(ProtocolError):
    """A URL the federation refuses to call or hand out; ``reason`` says which rule."""

    reason = "invalid_url"


def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one in canonical notation (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1); never for other names."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    ip = ip_literal(host)
    return ip is not None and _unmapped(ip).is_loopback


def check_service_url(url: str, *, field: str, dev: bool) -> str:
    """``url`` without its trailing slash, or :class:`UrlPolicyError` saying what is wrong.

    For URLs that carry signed requests or users' tokens: an absolute http(s) URL with a
    host, no credentials, query or fragment; https, or http to loopback with ``dev``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UrlPolicyError(f"{field} is not a valid URL", reason="invalid_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UrlPolicyError(f"{field} must be an absolute http(s) URL with a host", reason="invalid_url")
    if parts.username is not None or parts.password is not None:
        raise UrlPolicyError(f"{field} must not carry credentials", reason="invalid_url")
    if parts.query or parts.fragment:
        raise UrlPolicyError(f"{field} must not have a query or fragment", reason="invalid_url")
    if parts.scheme == "http":
        if not dev:
            raise UrlPolicyError(
                f"{field} must use https (plain http is allowed only on loopback in development mode)",
                reason="insecure_url",
            )
        if not is_loopback(host):
            raise UrlPolicyError(
                f"{field} uses plain http to {host!r}; even in development mode, http is allowed only on loopback",
                reason="insecure_url",
            )
    return url.rstrip("/")


def transport_allowed(url: str, *, dev: bool) -> bool:
    """Whether a stored URL may be called now: https, or http to loopback with ``dev``."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and dev and is_loopback(parts.hostname))


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, lower-cased host, port) of an http(s) URL, the default port filled in; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


# -- destinations (SSRF) ------------------------------------------------------------------


def _unmapped(ip: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1: judge an IPv4-mapped address by its IPv4 part.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_class(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``loopback``, ``link-local``, ...), or None when it is."""
    ip = _unmapped(ip)
    for name, hit in (
        ("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast), ("private", ip.is_private), ("reserved", ip.is_reserved),
    ):
        if hit:
            return name
    return None if ip.is_global else "not globally routable"


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses the federation may fetch from. ``dev`` turns the check off."""

    dev: bool = False
    allow: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, *, dev: bool, allow: Iterable[str] = ()) -> AddressPolicy:
        """From config: ``allow`` lists CIDR networks (or single addresses) an operator opened."""
        return cls(dev=dev, allow=tuple(ipaddress.ip_network(a, strict=False) for a in allow))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be fetched from, or None."""
        if self.dev:
            return None
        why = address_class(ip)
        if why is None or any(_unmapped(ip) in net or ip in net for net in self.allow):
            return None
        return why


GetAddrInfo = Callable[..., Awaitable[list[tuple[Any, ...]]]]


async def check_destination(host: str, port: int, policy: AddressPolicy, getaddrinfo: GetAddrInfo,
                            *, what: str = "URL") -> list[str]:
    """Every address ``host`` resolves to, after checking each against ``policy``.

    Refuses when *any* address is refused (a name with one public and one private address
    would otherwise be a coin toss). Callers that connect should connect to these addresses
    (pin them) so a second lookup cannot answer differently (DNS rebinding). The error
    names the rule, never whether anything listens there.
    """
    literal = ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = await getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise UrlPolicyError(f"{what}: the host {host!r} cannot be resolved", reason="unresolvable_host") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
        if not addresses:
            raise UrlPolicyError(f"{what}: the host {host!r} cannot be resolved", reason="unresolvable_host")
    for ip in addresses:
        why = policy.refusal(ip)
        if why is not None:
            raise UrlPolicyError(
                f"{what}: {host!r} resolves to a {why} address, which the federation does not fetch from "
                "(an operator can allow it in the configuration)",
                reason="blocked_address",
            )
    return [str(ip) for ip in addresses]


async def check_url_destination(url: str, policy: AddressPolicy, getaddrinfo: GetAddrInfo,
                                *, what: str = "URL") -> list[str]:
    """:func:`check_destination` for the host and port of ``url`` (default ports filled in)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlPolicyError(f"{what} is not a valid URL", reason="invalid_url") from None
    if not parts.hostname:
        raise UrlPolicyError(f"{what} has no host", reason="invalid_url")
    default = {"https": 443, "http": 80, "git": 9418, "ssh": 22}.get(parts.scheme, 443)
    return await check_destination(parts.hostname, port or default, policy, getaddrinfo, what=what)
