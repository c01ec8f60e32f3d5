"""Redirect mode: where a browser is sent to launch on a member itself, and the ticket it carries.

A member is a redirect target in one of two ways, which it states in its signed status ad
(``redirect``):

* ``binderhub``: its own BinderHub answers ``/build`` and ``/v2`` to browsers, as each member
  of mybinder.org's federation does. The browser goes to that BinderHub with the same path and
  query. The URL is the member's claim, so it must pass the same rule as member URLs (https, or
  http on loopback in development).
* ``ticket``: its agent answers ``/build`` to a browser that carries a launch ticket
  (:mod:`fedproto.tickets`): signed here, for that member, bound to provider/spec/ref/data,
  valid for at most a minute, accepted once. The agent URL is the one in the registry, never
  one from the ad.

A member that offers neither (an agent browsers cannot reach, ``public_launch = false``) is
never a redirect target: the next routable candidate of the same decision is.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Protocol
from urllib.parse import urlencode

from fedproto.clock import Clock
from fedproto.errors import InvalidRequest
from fedproto.keys import PrivateKey
from fedproto.status import StatusAd
from fedproto.tickets import sign_ticket

from ..registry.snapshot import MemberEntry, RegistrySnapshot
from ..registry.urlpolicy import check_member_url


@dataclass(frozen=True)
class RedirectTarget:
    """A member a browser can be sent to, and how."""

    entry: MemberEntry
    kind: Literal["binderhub", "ticket"]
    base: str  # the BinderHub's base URL, or the agent's, without a trailing slash

    @property
    def member_id(self) -> str:
        return self.entry.id


def redirect_target(entry: MemberEntry, ad: StatusAd | None, *, dev: bool) -> RedirectTarget | None:
    """How a browser can launch on ``entry`` directly, from its latest ad; None when it cannot."""
    offer = ad.redirect if ad is not None else None
    if offer is None:
        return None
    if offer.kind == "ticket":
        return RedirectTarget(entry, "ticket", entry.record.agent_url.rstrip("/"))
    base = _binderhub_base(offer.url or "", dev)
    return RedirectTarget(entry, "binderhub", base) if base is not None else None


@functools.lru_cache(maxsize=4096)
def _binderhub_base(url: str, dev: bool) -> str | None:
    """A member's BinderHub URL as checked, or None: a member claiming a URL the broker would not
    register is not sent users. Cached: the few URLs of a federation are checked on every redirect."""
    try:
        return check_member_url(url, field="redirect.url", dev=dev)
    except InvalidRequest:
        return None


def first_target(
    member_ids: Iterable[str], snapshot: RegistrySnapshot, ad_of: Callable[[str], StatusAd | None], *, dev: bool
) -> RedirectTarget | None:
    """The first of ``member_ids`` (best first) that browsers can be sent to. ``ad_of`` looks one
    member's ad up: only the few candidates tried are looked at, not the whole federation."""
    for member_id in member_ids:
        entry = snapshot.members.get(member_id)
        target = redirect_target(entry, ad_of(member_id), dev=dev) if entry is not None else None
        if target is not None:
            return target
    return None


@dataclass(frozen=True)
class TicketedLaunch:
    """What the browser asks for, as the broker saw it (the ticket binds it)."""

    provider: str
    raw_spec: str  # exactly as in the URL path: the agent checks it against its own path
    data: tuple[str, ...]
    query: tuple[tuple[str, str], ...]  # the whole query, passed on
    decision_id: str | None = None
    client_ip: str | None = None
    origin: str | None = None


class _Signer(Protocol):
    @property
    def signing_key(self) -> PrivateKey: ...


class TicketIssuer:
    """Signs launch tickets with the broker's current signing key and builds the agent URL that carries one."""

    def __init__(self, keyring: _Signer, broker_id: str, clock: Clock) -> None:
        self._keyring = keyring
        self._broker_id = broker_id
        self._clock = clock

    def build_url(self, target: RedirectTarget, launch: TicketedLaunch) -> str:
        """``{agent}/build/{provider}/{spec}?{query}&ticket=...`` for one launch on ``target``."""
        ticket = sign_ticket(
            self._keyring.signing_key, issuer=self._broker_id, audience=target.member_id,
            provider=launch.provider, spec=launch.raw_spec, data=launch.data,
            launch_id=secrets.token_urlsafe(12), clock=self._clock, decision_id=launch.decision_id,
            client_ip=launch.client_ip, origin=launch.origin,
        )
        # A compact JWS is base64url and dots, which a query carries as they are: only the rest is encoded.
        query = urlencode([(k, v) for k, v in launch.query if k != "ticket"])
        return f"{target.base}/build/{launch.provider}/{launch.raw_spec}?{query}{'&' if query else ''}ticket={ticket}"
