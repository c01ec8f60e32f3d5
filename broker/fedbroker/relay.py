"""The launch relay: streams a member's launch events to the client, failing over before ``ready``.

Given a ranked decision, the relay tries the first routable member and passes its events on
with ``member`` added. If that member fails before ``ready`` for a reason another member
might not share (connection error, timeout, non-200, ``failed`` with 429, 5xx or a quota
message), the failure goes into health, the client gets a ``waiting`` event saying so, and
the next candidate is tried, up to ``routing.max_attempts``. A ``failed`` that blames the
repository (other 4xx, or no status code and no quota wording, as BinderHub's build errors
are) is final: every member would fail the same way.
"""

from __future__ import annotations

import re
import secrets
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import urljoin

from fedproto.clock import Clock
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec
from fedproto.routing import RouteDecision

from .config import RoutingSettings
from .health import HealthTable
from .memberclient import MemberCallError, MemberClient
from .metrics import BrokerMetrics
from .snapshot import MemberEntry, RegistrySnapshot

_QUOTA = re.compile(r"quota|capacity|too many|no space|insufficient|full", re.IGNORECASE)


def is_retryable(event: LaunchEvent) -> bool:
    """Whether a member's ``failed`` event is the member's trouble rather than the repo's."""
    code = event.status_code
    if code is None:
        return _QUOTA.search(event.message) is not None
    return code == 429 or code >= 500


@dataclass(frozen=True)
class LaunchTarget:
    """What is launched and for whom, beside the decision."""

    repo: RepoSpec
    data: tuple[str, ...] = ()
    client_ip: str | None = None
    origin: str | None = None


@dataclass
class _Attempt:
    """How one member's attempt ended: ``done`` when a terminal event went to the client."""

    done: bool = False
    error: str = "stream ended before ready"


class LaunchRelay:
    """Relays launches with bounded failover; records outcomes in health and metrics."""

    def __init__(
        self, client: MemberClient, health: HealthTable, metrics: BrokerMetrics, settings: RoutingSettings, clock: Clock
    ) -> None:
        self._client = client
        self._health = health
        self._metrics = metrics
        self._settings = settings
        self._clock = clock

    async def relay(
        self, decision: RouteDecision, snapshot: RegistrySnapshot, target: LaunchTarget
    ) -> AsyncIterator[LaunchEvent]:
        """Events for the client, ending with exactly one ``ready`` or ``failed``."""
        entries = [snapshot.members[m] for m in decision.routable_ids() if m in snapshot.members]
        entries = entries[: self._settings.max_attempts]
        failures: list[str] = []
        self._metrics.streams_open.inc()
        try:
            for i, entry in enumerate(entries):
                attempt = _Attempt()
                async for event in self._attempt(entry, self._request(decision, target), attempt):
                    yield event
                if attempt.done:
                    return
                failures.append(f"{entry.id}: {attempt.error}")
                if i + 1 < len(entries):
                    self._metrics.failover(entry.id)
                    yield LaunchEvent(
                        phase="waiting",
                        member=entry.id,
                        message=f"Member {entry.id} could not launch this ({attempt.error}); "
                        f"trying member {entries[i + 1].id} (attempt {i + 2} of {len(entries)}).\n",
                    )
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
        self, entry: MemberEntry, request: LaunchRequest, attempt: _Attempt
    ) -> AsyncIterator[LaunchEvent]:
        health = self._health.member(entry.id)
        health.record_launch_started()
        started = self._clock.now()
        try:
            async with aclosing(self._client.launch(entry, request)) as events:
                async for event in events:
                    event = event.model_copy(update={"member": entry.id})
                    if event.phase == "ready":
                        health.record_launch_success(self._clock.now() - started)
                        self._metrics.launch(entry.id, "ready")
                        attempt.done = True
                        yield _finish_ready(event, entry, request.decision_id)
                        return
                    if event.phase == "failed":
                        if is_retryable(event):
                            attempt.error = event.message.strip() or f"failed with {event.status_code}"
                            break
                        self._metrics.launch(entry.id, "repo_error")
                        health.record_repo_error()
                        attempt.done = True
                        yield event
                        return
                    yield event
        except MemberCallError as exc:
            attempt.error = exc.message
        except BaseException:
            # The client went away (or we are shutting down): not the member's fault.
            if not attempt.done:
                self._metrics.launch(entry.id, "cancelled")
            raise
        health.record_launch_failure()
        self._metrics.launch(entry.id, "failed")


def _finish_ready(event: LaunchEvent, entry: MemberEntry, decision_id: str | None) -> LaunchEvent:
    """``ready`` as clients need it: the decision id, and ``url`` absolute with a trailing slash."""
    url = event.url
    if url is not None:
        url = urljoin(entry.record.public_url.rstrip("/") + "/", url)
        url = url if url.endswith("/") else url + "/"
    return event.model_copy(update={"decision": decision_id, "url": url})


def _gave_up(failures: list[str]) -> LaunchEvent:
    if not failures:
        return LaunchEvent(phase="failed", status_code=503, message="No member can take this launch right now.\n")
    detail = "; ".join(failures)
    return LaunchEvent(
        phase="failed",
        status_code=503,
        message=f"Launch failed on {len(failures)} member(s): {detail}. Please try again later.\n",
    )
