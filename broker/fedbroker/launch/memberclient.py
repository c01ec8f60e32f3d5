"""The signed HTTP client the broker uses to call member agents.

One ``aiohttp.ClientSession`` for the whole app, opened and closed in a ``cleanup_ctx``, for
launches, builds and deletes; status polls, the most frequent call by far, go over the small
client in :mod:`.statusget` (closed with :meth:`MemberClient.close`).
Every request carries a fresh request token bound to its method, path+query and body.
Agents are reached over TLS trusting ``ca_bundle`` (or the system store), and a failure
names its real cause ("certificate verify failed: ...", "HTTP 401, unknown_key").
Failures are raised as :class:`MemberCallError` with a ``kind`` the relay and the
poller can act on (connect, timeout, http, protocol, insecure).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from typing import AsyncIterator, Iterable

import aiohttp
import aiohttp.abc
from aiohttp.http_exceptions import LineTooLong
from pydantic_core import from_json
from yarl import URL

from fedproto.clock import Clock
from fedproto.errors import ProtocolError
from fedproto.keys import KeyRing
from fedproto.tls import client_context, describe_failure
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.sse import EventStreamParser
from fedproto.status import KnownImages, StatusAd, verify_status_ad
from fedproto.tokens import MAX_DOCUMENT_BYTES, sign_request
from fedproto.urlpolicy import AddressPolicy, ip_literal, transport_allowed
from fedproto.version import PROTOCOL, PROTOCOL_HEADER, ProtocolVersionError, peer_version

ANNOUNCE_HEADER = "Federation-Broker-Keys"  # fedmember.brokertrust reads it
# The largest status answer read: the largest signed document and its JSON wrapper. A member
# cannot make the broker buffer more for a poll.
MAX_STATUS_ANSWER_BYTES = MAX_DOCUMENT_BYTES + 4096
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~-]*")

from ..registry.brokerkeys import BrokerKeys
from ..config import BrokerConfig
from .events import EventBudget, EventRejected
from .statusget import HttpFailure, StatusConnections
from ..registry.snapshot import MemberEntry


class MemberCallError(Exception):
    """A call to a member that did not give a usable answer."""

    def __init__(self, member_id: str, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{member_id}: {message}")
        self.member_id = member_id
        self.kind = kind  # connect | timeout | http | protocol | insecure
        self.message = message
        self.status = status


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to addresses the policy forbids.

    Checked where the connection is made, so an agent URL whose DNS changed after it was
    registered (DNS rebinding) still cannot aim signed requests at the broker's own network.
    aiohttp does not resolve IP literals; :meth:`MemberClient.url` checks those.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[aiohttp.abc.ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            why = self._policy.refusal(ipaddress.ip_address(result["host"]))
            if why is not None:
                raise OSError(f"{host} resolves to a {why} address; the broker does not call it")
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_resolver(config: BrokerConfig) -> GuardedResolver:
    """The resolver for every session that calls member-given URLs (agents, canary checks)."""
    return GuardedResolver(AddressPolicy.of(dev=config.dev, allow=config.agent_url_allow))


class MemberClient:
    """Signed calls to member agents: status, launch, build, delete."""

    def __init__(self, config: BrokerConfig, keyring: BrokerKeys | KeyRing, clock: Clock, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._keyring = keyring
        self._clock = clock
        self._session = session
        self._destinations = AddressPolicy.of(dev=config.dev, allow=config.agent_url_allow)
        self._bases: dict[str, str] = {}  # agent URL -> its checked base (only URLs that passed)
        self._known_images: dict[str, KnownImages | None] = {}  # member -> its last ad's image summary
        self._resolver = guarded_resolver(config)
        self._polls = StatusConnections(client_context(config.ca_bundle_path), self._resolver,
                                        config.routing.connect_timeout)

    def url(self, entry: MemberEntry, path: str) -> URL:
        """The agent URL for ``path``; https unless in dev mode on loopback, never an internal address."""
        base = self._bases.get(entry.record.agent_url)
        if base is None:
            base = self._bases[entry.record.agent_url] = self._checked_base(entry)
        # A path of unreserved characters needs no encoding, and yarl skips it when told so.
        return URL(base + path, encoded=_PLAIN_PATH.fullmatch(path) is not None)

    def _checked_base(self, entry: MemberEntry) -> str:
        """The agent URL, checked, as the base of every call (the checks depend only on the URL and
        the config, so a URL is checked once, not on every poll)."""
        base = URL(entry.record.agent_url)
        if not transport_allowed(entry.record.agent_url, dev=self._config.dev):
            raise MemberCallError(
                entry.id,
                "insecure",
                f"agent URL must be https (plain http is only allowed with --dev on loopback): {base.scheme}://{base.host}",
            )
        literal = ip_literal(base.host or "")
        why = self._destinations.refusal(literal) if literal is not None else None
        if why is not None:
            raise MemberCallError(entry.id, "insecure", f"agent URL points to a {why} address; the broker does not call it")
        return str(base).rstrip("/")

    def _headers(self, entry: MemberEntry, method: str, url: URL, body: bytes) -> dict[str, str]:
        token = sign_request(
            self._keyring.signing_key,
            issuer=self._config.broker_id,
            audience=entry.id,
            method=method,
            path_qs=url.raw_path_qs,
            body=body,
            clock=self._clock,
        )
        # Every published key, so a member that lacks a new one fetches the signed key set now
        # rather than at its next scheduled refresh (fedmember.brokertrust).
        headers = {"Authorization": f"Bearer {token}", ANNOUNCE_HEADER: ",".join(self._keyring.public_set().kids),
                   PROTOCOL_HEADER: str(PROTOCOL)}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    async def status(self, entry: MemberEntry, timeout: float) -> StatusAd:
        """Fetch and verify the member's signed status ad. Its image summary is shared with the
        member's last ad when unchanged (:class:`fedproto.status.KnownImages`).

        Fetched with :mod:`.statusget` rather than the aiohttp session: the poll is the broker's most
        frequent call, and that client costs about half the CPU that aiohttp's did.
        """
        url = self.url(entry, "/api/v1/status")
        try:
            async with asyncio.timeout(timeout):
                answer = await self._polls.get(url, self._headers(entry, "GET", url, b""), MAX_STATUS_ANSWER_BYTES)
        except TimeoutError:
            raise MemberCallError(entry.id, "timeout", f"status poll timed out after {timeout:g} s") from None
        except HttpFailure as exc:
            cause = describe_failure(exc.__cause__) if exc.__cause__ is not None else exc.message
            message = f"cannot reach agent: {cause}" if exc.kind == "connect" else exc.message
            raise MemberCallError(entry.id, exc.kind, message) from None
        _check_version(entry, answer.headers.get(PROTOCOL_HEADER.lower()), answer.status)
        if answer.status != 200:
            raise MemberCallError(entry.id, "http", _status_error(answer.status, answer.body), answer.status)
        try:
            payload = from_json(answer.body)
        except ValueError:
            raise MemberCallError(entry.id, "protocol", "status answer is not JSON") from None
        signed = payload.get("signed") if isinstance(payload, dict) else None
        if not isinstance(signed, str):
            raise MemberCallError(entry.id, "protocol", 'status answer has no "signed" string')
        known = self._known_images.get(entry.id)
        try:
            ad = verify_status_ad(signed, keys=entry.keys, member_id=entry.id, clock=self._clock, known=known)
        except ProtocolError as exc:
            raise MemberCallError(entry.id, "protocol", f"status ad rejected: {exc.message}") from None
        if known is None or ad.images is not known.summary:
            self._known_images[entry.id] = KnownImages.of(ad.images)
        return ad

    def forget_except(self, member_ids: Iterable[str]) -> None:
        """Drop what is kept per member (its last image summary) for members no longer polled."""
        keep = set(member_ids)
        for member_id in [m for m in self._known_images if m not in keep]:
            del self._known_images[member_id]

    async def close(self) -> None:
        """Close the status polls' connections (the aiohttp session is its owner's to close)."""
        await self._polls.close()
        await self._resolver.close()

    def launch(self, entry: MemberEntry, request: LaunchRequest) -> AsyncIterator[LaunchEvent]:
        """Start build+launch; yields the member's events until ``ready``/``failed``."""
        return self._stream(entry, "/api/v1/launches", request)

    def build(self, entry: MemberEntry, request: LaunchRequest) -> AsyncIterator[LaunchEvent]:
        """Build only; yields the member's events until ``built``/``failed``."""
        return self._stream(entry, "/api/v1/builds", request)

    async def delete(self, entry: MemberEntry, launch_id: str) -> bool:
        """Stop a launch; True if it existed, False if the member did not know it."""
        url = self.url(entry, f"/api/v1/launches/{launch_id}")
        try:
            async with asyncio.timeout(self._config.routing.connect_timeout * 2):
                async with self._session.delete(url, headers=self._headers(entry, "DELETE", url, b"")) as resp:
                    if resp.status in (200, 204):
                        return True
                    if resp.status == 404:
                        return False
                    raise MemberCallError(entry.id, "http", f"delete answered HTTP {resp.status}", resp.status)
        except TimeoutError:
            raise MemberCallError(entry.id, "timeout", "delete timed out") from None
        except aiohttp.ClientError as exc:
            raise MemberCallError(entry.id, "connect", f"cannot reach agent: {describe_failure(exc)}") from None

    async def _stream(self, entry: MemberEntry, path: str, request: LaunchRequest) -> AsyncIterator[LaunchEvent]:
        url = self.url(entry, path)
        body = request.model_dump_json(exclude_none=True).encode()
        idle = self._config.routing.event_timeout
        try:
            async with asyncio.timeout(self._config.routing.connect_timeout + idle):
                resp = await self._session.post(url, data=body, headers=self._headers(entry, "POST", url, body))
        except TimeoutError:
            raise MemberCallError(entry.id, "timeout", "no answer to the launch request") from None
        except aiohttp.ClientError as exc:
            raise MemberCallError(entry.id, "connect", f"cannot reach agent: {describe_failure(exc)}") from None
        async with resp:
            _check_version(entry, resp.headers.get(PROTOCOL_HEADER), resp.status)
            if resp.status != 200:
                raise MemberCallError(entry.id, "http", await _error_text(resp), resp.status)
            routing = self._config.routing
            budget = EventBudget(per_event=routing.max_event_bytes, total=routing.max_launch_event_bytes)
            async for event in _read_events(entry.id, resp, idle, budget):
                yield event


def _check_version(entry: MemberEntry, header: str | None, status: int) -> None:
    """A member answering in another major protocol version is unusable, and the error says why."""
    try:
        peer_version(header, peer=f"member {entry.id}")
    except ProtocolVersionError as exc:
        raise MemberCallError(entry.id, "protocol", exc.message, status) from None


def _status_error(status: int, body: bytes) -> str:
    """``status answered HTTP 401, unknown_key``: the agent's own reason, which says what to fix."""
    try:
        payload = json.loads(body)
        reason = payload.get("error") if isinstance(payload, dict) else None
    except ValueError:
        reason = None
    return f"status answered HTTP {status}" + (f", {str(reason)[:60]}" if isinstance(reason, str) else "")


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    try:
        payload = json.loads(await resp.read())
        detail = payload.get("message") or payload.get("error") if isinstance(payload, dict) else None
    except (ValueError, aiohttp.ClientError):
        detail = None
    return f"launch answered HTTP {resp.status}" + (f": {str(detail)[:200]}" if detail else "")


async def _read_events(member_id: str, resp: aiohttp.ClientResponse, idle: float,
                       budget: EventBudget) -> AsyncIterator[LaunchEvent]:
    """The member's events: lines fed to :class:`fedproto.sse.EventStreamParser` (the framing both
    sides share); comments keep the stream alive.

    Lines are read at most ``budget.per_event`` bytes at a time and counted against the budget,
    so a member cannot make the broker buffer an endless line or an endless event.
    """
    parser = EventStreamParser()
    while True:
        try:
            async with asyncio.timeout(idle):
                raw = await resp.content.readuntil(b"\n", max_size=budget.per_event)
        except TimeoutError:
            raise MemberCallError(member_id, "timeout", f"no event for {idle:g} s") from None
        except LineTooLong:
            raise MemberCallError(member_id, "protocol", f"an event line exceeded {budget.per_event} bytes") from None
        except aiohttp.ClientError as exc:
            raise MemberCallError(member_id, "connect", f"stream broke: {exc.__class__.__name__}") from None
        if not raw:
            return  # end of stream; the caller decides whether it ended too early
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        try:
            budget.line(len(raw), data=line.startswith("data:"))
        except EventRejected as exc:
            raise MemberCallError(member_id, "protocol", exc.message) from None
        data = parser.feed(line)
        if data is not None:
            budget.event_done()
            yield _parse_event(member_id, data)


def _parse_event(member_id: str, text: str) -> LaunchEvent:
    try:
        return LaunchEvent.received_json(text)
    except ValueError:
        raise MemberCallError(member_id, "protocol", "member sent an event that is not a launch event") from None


def new_session(config: BrokerConfig) -> aiohttp.ClientSession:
    """The one ``ClientSession`` the broker uses to talk to members (the caller closes it)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.routing.connect_timeout)
    # No pool limit: aiohttp's default of 100 connections let 100 long launch streams (builds
    # take minutes) hold every slot, so the 101st launch and every status poll queued behind
    # them, and healthy members timed out into "unhealthy". Launches are bounded upstream
    # (one per client request, rate limits); polls by health.concurrency.
    connector = aiohttp.TCPConnector(limit=0, ssl=client_context(config.ca_bundle_path), resolver=guarded_resolver(config))
    return aiohttp.ClientSession(timeout=timeout, connector=connector)
