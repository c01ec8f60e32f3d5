"""Which member URLs the broker accepts: fedproto's URL policy, with the broker's errors and config.

Transport: https, or plain http on loopback in development. Destination: outside
development, a member URL the broker calls (the agent URL with signed requests, the public
URL for canary checks) must resolve to public addresses only, unless the operator allowed
the network (``agent_url_allow``).
"""

from __future__ import annotations

import asyncio

from fedproto.errors import InvalidRequest
from fedproto.urlpolicy import AddressPolicy, UrlPolicyError, check_service_url, check_url_destination, is_loopback

from ..config import BrokerConfig

__all__ = ["agent_destinations", "check_agent_url", "check_member_url", "is_loopback"]


def check_member_url(url: str, *, field: str, dev: bool) -> str:
    """``url`` without a trailing slash, or :class:`InvalidRequest` saying what is wrong with it."""
    try:
        return check_service_url(url, field=field, dev=dev)
    except UrlPolicyError as exc:
        raise InvalidRequest(exc.message, reason=exc.reason) from None


def agent_destinations(config: BrokerConfig) -> AddressPolicy:
    """Where agent URLs may point: anywhere in dev mode, else public addresses and the allow-list."""
    return AddressPolicy.of(dev=config.dev, allow=config.agent_url_allow)


async def check_agent_url(url: str, config: BrokerConfig, field: str = "agent_url") -> str:
    """:func:`check_member_url`, then the destination check (the host is resolved, nothing contacted).

    A name that does not resolve yet is accepted (a site may register before its DNS is up):
    the member client checks every address again when it connects, which is the real gate.
    """
    checked = check_member_url(url, field=field, dev=config.dev)
    try:
        await check_url_destination(checked, agent_destinations(config), asyncio.get_running_loop().getaddrinfo,
                                    what=field)
    except UrlPolicyError as exc:
        if exc.reason != "unresolvable_host":
            raise InvalidRequest(exc.message, reason=exc.reason) from None
    return checked
