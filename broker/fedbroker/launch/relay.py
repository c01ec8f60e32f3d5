"""The launch relay: streams a member's launch events to the client, failing over before ``ready``.

Given a ranked decision, the relay tries the first routable member and passes its events on
with ``member`` added. If that member fails before ``ready`` for a reason another member
might not share (connection error, timeout, non-200, or a ``failed`` whose code fails over
in the one failure table, :mod:`fedproto.failures`: capacity, unavailable, timeout), the
failure goes into health, the client gets a ``waiting`` event saying so, and the next
candidate is tried, up to ``routing.max_attempts``. A ``failed`` that blames the repository
(unbuildable, not found, bad request) is final: every member would fail the same way.

A refusal (``failed`` with 429, or HTTP 429: a member's rate limit, quota or full hub) fails
over like any member trouble but is not held against the member's health: it says the member
is busy, not broken, so it never leads to an ejection. A client that goes away before
``ready`` abandons the launch: the member is asked at once (``DELETE``) to stop what it
started, since nobody else holds that server's token.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from fedproto.clock import Clock
from fedproto.failures import Failure, fails_over
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec
from fedproto.routing import RouteDecision

from ..config import RoutingSettings
from ..metrics import BrokerMetrics
from ..registry.snapshot import MemberEntry, RegistrySnapshot
from ..routing.health import HealthTable
from ..routing.slo import OVERALL, SloTracker
from .events import EventRejected, ready_url, relayable
from .memberclient import MemberCallError, MemberClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchTarget:
    """What is launched and for whom, beside the decision."""

    repo: RepoSpec
    data: tuple[str, ...] = ()
    client_ip: str | None = None
    origin: str | None = None


# Routes the launch again: a fresh decision and the snapshot it was made from.
Redecide = Callable[[], tuple[RouteDecision, RegistrySnapshot]]


def _next_candidate(decision: RouteDecision, snapshot: RegistrySnapshot, tried: set[str]) -> MemberEntry | None:
    """The decision's best routable member not tried yet (and still in the registry)."""
    for member_id in decision.routable_ids():
        if member_id not in tried and member_id in snapshot.members:
            return snapshot.members[member_id]
    return None


@dataclass
class _Attempt:
    """How one member's attempt ended: ``done`` when a terminal event went to the client."""

    done: bool = False
    ready: bool = False
    error: str = "stream ended before ready"
    refused: bool = False  # the member turned this launch away (429 full, 501 not served here): not broken


class LaunchRelay:
    """Relays launches with bounded failover; records outcomes in health and metrics."""

    def __init__(
        self, client: MemberClient, health: HealthTable, metrics: BrokerMetrics, settings: RoutingSettings, clock: Clock,
        launch_host: str | None = None, slo: SloTracker | None = None,
    ) -> None:
        self._slo = slo
        self._launch_host = launch_host.rstrip("/") + "/" if launch_host else None
        self._client = client
        self._health = health
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._cancels: set[asyncio.Task[None]] = set()  # DELETEs of abandoned launches in flight

    async def relay(
        self, decision: RouteDecision, snapshot: RegistrySnapshot, target: LaunchTarget,
        redecide: Redecide | None = None,
    ) -> AsyncIterator[LaunchEvent]:
        """Events for the client, ending with exactly one ``ready`` or ``failed``.

        ``redecide`` routes the launch again when the decision's candidates are used up but
        attempts are left: the members it listed may all have failed while another member came
        back (or was full) at decision time, and health knows about the failures by now.

        Each decision has already counted its launch against its chosen member (provisional load,
        ``routing/live.py``), so an attempt at that member does not count it a second time.
        """
        failures: list[str] = []
        tried: set[str] = set()
        started = self._clock.now()
        self._metrics.streams_open.inc()
        try:
            entry = _next_candidate(decision, snapshot, tried)
            for i in range(self._settings.max_attempts):
                if entry is None:
                    break
                tried.add(entry.id)
                attempt = _Attempt()
                counted = entry.id == decision.chosen and decision.chosen not in tried - {entry.id}
                async for event in self._attempt(entry, self._request(decision, target), attempt, counted):
                    if attempt.ready:  # counted before `ready` goes out: the client may stop reading there
                        self._record_slo(OVERALL, True, self._clock.now() - started)
                    yield event
                if attempt.done:
                    return
                failures.append(f"{entry.id}: {attempt.error}")
                failed, entry = entry, _next_candidate(decision, snapshot, tried)
                if entry is None and redecide is not None:
                    decision, snapshot = redecide()
                    entry = _next_candidate(decision, snapshot, tried)
                if entry is not None and i + 1 < self._settings.max_attempts:
                    self._metrics.failover(failed.id)
                    yield LaunchEvent(
                        phase="waiting",
                        member=failed.id,
                        message=f"Member {failed.id} could not launch this ({attempt.error}); "
                        f"trying member {entry.id} (attempt {i + 2} of {self._settings.max_attempts}).\n",
                    )
            if failures:  # nothing routable at all is not a launch that failed somewhere
                self._record_slo(OVERALL, False)
            yield _gave_up(failures)
        finally:
            self._metrics.streams_open.dec()

    @staticmethod
    def _request(decision: RouteDecision, target: LaunchTarget) -> LaunchRequest:
        # A fresh launch id per attempt: a member that half-started the launch keeps its own.
        return LaunchRequest(
            provider=target.repo.provider,
            spec=target.repo.spec,
            data=list(target.data),
            launch_id=secrets.token_urlsafe(12),
            decision_id=decision.decision_id,
            client_ip=target.client_ip,
            origin=target.origin,
        )

    async def _attempt(
        self, entry: MemberEntry, request: LaunchRequest, attempt: _Attempt, counted: bool = False
    ) -> AsyncIterator[LaunchEvent]:
        health = self._health.member(entry.id)
        if not counted:  # the decision counted it already when it chose this member
            health.record_launch_started()
        started = self._clock.now()
        try:
            async with aclosing(self._client.launch(entry, request)) as events:
                async for event in events:
                    event = relayable(event, entry.id)  # BinderHub's fields and ours only
                    if event.phase == "ready":
                        try:
                            url = ready_url(event, entry.record.public_url)
                        except EventRejected as exc:
                            attempt.error = exc.message  # the member's fault: fail over, charge it
                            break
                        health.record_launch_success(self._clock.now() - started)
                        self._record_slo(entry.id, True, self._clock.now() - started)
                        self._metrics.launch(entry.id, "ready")
                        attempt.done = attempt.ready = True
                        yield _finish_ready(event, url, request.decision_id, self._launch_host)
                        return
                    if event.phase == "failed":
                        if fails_over(event.status_code, event.message):
                            attempt.error = event.message.strip() or f"failed with {event.status_code}"
                            # 429 (full) and 501 (a repository this member does not serve, such as a
                            # JupyterHub member's unmatched repo): turned away, not broken.
                            attempt.refused = event.status_code in (Failure.CAPACITY, Failure.NOT_SUPPORTED)
                            break
                        self._metrics.launch(entry.id, "repo_error")
                        health.record_repo_error()
                        health.release_launch()
                        attempt.done = True
                        yield event
                        return
                    yield event
        except MemberCallError as exc:
            attempt.error = exc.message
            attempt.refused = exc.status == 429
        except BaseException:
            # The client went away (or we are shutting down): not the member's fault.
            if not attempt.done:
                health.release_launch()
                self._abandon(entry, request.launch_id)
            raise
        # No server came of this attempt: it is not load on the member any more.
        health.release_launch()
        if attempt.refused:
            self._metrics.launch(entry.id, "refused")
            return
        health.record_launch_failure()
        self._record_slo(entry.id, False)
        self._metrics.launch(entry.id, "failed")

    def _abandon(self, entry: MemberEntry, launch_id: str) -> None:
        """Ask the member to stop a launch nobody waits for any more, without holding up the caller."""
        self._metrics.launch(entry.id, "abandoned")
        log.info("launch %s on %s: the client left before ready; asking the member to stop it", launch_id, entry.id)
        task = asyncio.get_running_loop().create_task(self._cancel_at_member(entry, launch_id))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _cancel_at_member(self, entry: MemberEntry, launch_id: str) -> None:
        try:
            await self._client.delete(entry, launch_id)
        except MemberCallError as exc:
            # The member's own launch timeout and idle culling are the backstop.
            log.info("launch %s on %s: could not cancel it at the member: %s", launch_id, entry.id, exc.message)

    async def close(self, timeout: float = 5.0) -> None:
        """Let the cancellations of abandoned launches finish (at shutdown, before the client session closes)."""
        if self._cancels:
            await asyncio.wait(list(self._cancels), timeout=timeout)

    def _record_slo(self, key: str, ok: bool, seconds: float | None = None) -> None:
        if self._slo is not None:
            self._slo.record(key, ok, seconds)


def _finish_ready(event: LaunchEvent, url: str, decision_id: str | None, launch_host: str | None) -> LaunchEvent:
    """``ready`` as clients need it: the decision id, ``url`` (checked, absolute, trailing slash), and
    ``binder_launch_host`` naming the broker (the Binder the user launched from, as BinderHub does)."""
    update: dict[str, object] = {"decision": decision_id, "url": url}
    if launch_host is not None:
        update["binder_launch_host"] = launch_host
    return event.model_copy(update=update)


def _gave_up(failures: list[str]) -> LaunchEvent:
    if not failures:
        return LaunchEvent(phase="failed", status_code=Failure.UNAVAILABLE, message="No member can take this launch right now.\n")
    detail = "; ".join(failures)
    return LaunchEvent(
        phase="failed",
        status_code=Failure.UNAVAILABLE,
        message=f"Launch failed on {len(failures)} member(s): {detail}. Please try again later.\n",
    )
