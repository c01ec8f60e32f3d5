"""The canary runner: the I/O loop that launches the canary repository on each member, checks the
server it got answers with its token, stops it, and records what it saw.

Which members, when, and what a result means are decided by the pure :mod:`fedbroker.routing.canary`;
this module only talks to members (through the signed :class:`MemberClient`) and to the started
server. A canary is a real launch through the member's signed API, so it proves everything a user
launch needs: fetch, build (cached after the first), server start, and the token.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from contextlib import aclosing
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from fedproto.canary import CanaryResult
from fedproto.clock import Clock
from fedproto.errors import SpecError
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.member import MemberState
from fedproto.repospec import RepoSpec

from ..config import CanarySettings, ConfigError
from ..metrics import BrokerMetrics
from ..registry.snapshot import MemberEntry, SnapshotHolder
from ..routing.canary import CanarySchedule, canary_applies
from ..routing.health import HealthTable, MemberHealth
from .inflight import MemberTasks
from .memberclient import MemberCallError, MemberClient

log = logging.getLogger(__name__)

_MAX_IDLE = 1.0  # upper bound on one idle wait, so a clock that jumps (or a fake one) is noticed
_REASON_LIMIT = 300


def canary_repo(settings: CanarySettings, *, dev: bool) -> RepoSpec | None:
    """The configured canary repository, parsed; None when canaries are off."""
    if not settings.repo:
        return None
    provider, _, spec = settings.repo.partition("/")
    try:
        return RepoSpec.parse(provider, spec, allow_file=dev)
    except SpecError as exc:
        raise ConfigError(f"canary.repo {settings.repo!r}: {exc.message}") from None


class _Failed(Exception):
    """A canary step that failed: ``outcome`` is the metric label, the message the reason shown."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class _Skipped(Exception):
    """The member had no room for the canary (429): not the member's failure, tried again soon."""


@dataclass
class _Timing:
    started: float
    built: float | None = None
    ready: float | None = None


class CanaryRunner:
    """Runs due canaries, at most ``concurrency`` at once and one per member, and feeds health."""

    def __init__(
        self, settings: CanarySettings, repo: RepoSpec, snapshots: SnapshotHolder, health: HealthTable,
        client: MemberClient, metrics: BrokerMetrics, clock: Clock, http: aiohttp.ClientSession,
        rng: random.Random | None = None,
    ) -> None:
        self._s = settings
        self._repo = repo
        self._snapshots = snapshots
        self._health = health
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._http = http
        self._schedule = CanarySchedule(settings.interval, settings.retry_interval, settings.jitter, clock,
                                        rng or random.Random())
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._inflight = MemberTasks()

    def sync(self) -> list[str]:
        """Reserve the canary slot on every member canaries apply to (and free it elsewhere); return them."""
        snapshot = self._snapshots.current
        chosen = []
        for entry in snapshot.in_states(MemberState.active):
            state = self._health.get(entry.id)
            if state is None:
                continue
            if not entry.record.canary:
                state.canaries_turned_off()
                continue
            on = canary_applies(True, state.ad)
            state.reserve_canary_slot(on)
            if on:
                chosen.append(entry.id)
        for member_id in self._health.ids():
            if member_id not in chosen and (state := self._health.get(member_id)) is not None:
                state.reserve_canary_slot(False)
        self._schedule.sync(chosen)
        for member_id in chosen:
            self._metrics.canary_member_seen(member_id)
        return chosen

    def start_due(self) -> list[asyncio.Task[None]]:
        """Start the canary of every due member whose ad is live and healthy."""
        self.sync()
        snapshot = self._snapshots.current
        started = []
        for member_id in self._schedule.due():
            entry, view = snapshot.members.get(member_id), self._health.view(member_id)
            if entry is None or view is None or view.ad_expired or view.state.value != "healthy":
                continue  # polls already say it is down; a canary would only repeat that
            self._schedule.start(member_id)
            started.append(self._inflight.start(member_id, self._run(entry), f"canary-{member_id}"))
        return started

    async def run_due(self) -> int:
        """Run every due canary and wait for them; return how many ran (for tests)."""
        tasks = self.start_due()
        await asyncio.gather(*tasks)
        return len(tasks)

    async def _run(self, entry: MemberEntry) -> None:
        ok: bool | None = None
        try:
            async with self._limit:
                ok = await self.canary(entry)
        finally:
            self._schedule.finish(entry.id, ok)

    async def canary(self, entry: MemberEntry) -> bool | None:
        """One canary on ``entry``: launch, check, stop; record it. True/False, or None when skipped."""
        health = self._health.member(entry.id)
        timing = _Timing(started=self._clock.now())
        launch_id = "canary-" + secrets.token_urlsafe(12)
        health.canary_started()
        try:
            ready = await self._launch(entry, launch_id, timing)
            await self._check(entry, ready)
        except _Skipped:
            self._metrics.canary(entry.id, "skipped")
            return None
        except _Failed as exc:
            result = self._result(timing, outcome=exc.outcome, reason=str(exc))
        except Exception:  # a bug must not kill the loop unobserved
            log.exception("canary on member %s failed unexpectedly", entry.id)
            result = self._result(timing, outcome="error", reason="internal error while running the canary")
        else:
            result = self._result(timing, outcome="ok", reason=None)
        finally:
            await self._stop(entry, launch_id)
            health.canary_stopped()
        self._record(entry.id, health, result)
        return result.ok

    async def _launch(self, entry: MemberEntry, launch_id: str, timing: _Timing) -> LaunchEvent:
        request = LaunchRequest(provider=self._repo.provider, spec=self._repo.spec, launch_id=launch_id,
                                decision_id="canary")
        try:
            async with asyncio.timeout(self._s.timeout):
                async with aclosing(self._client.launch(entry, request)) as events:
                    async for event in events:
                        if event.phase == "built" and timing.built is None:
                            timing.built = self._clock.now()
                        elif event.phase == "ready":
                            timing.ready = self._clock.now()
                            return event
                        elif event.phase == "failed":
                            if event.status_code == 429:
                                raise _Skipped()
                            raise _Failed("launch_failed", event.message.strip() or f"failed ({event.status_code})")
        except TimeoutError:
            raise _Failed("timeout", f"not ready within {self._s.timeout:g} s") from None
        except MemberCallError as exc:
            if exc.status == 429:
                raise _Skipped() from None
            raise _Failed("launch_failed", exc.message) from None
        raise _Failed("launch_failed", "the launch stream ended before ready")

    async def _check(self, entry: MemberEntry, ready: LaunchEvent) -> None:
        """The server the member started answers ``api/status`` with the token it returned.

        Only on the member's public host (any port: a single-machine member serves each server on its
        own), so a member cannot point the broker's requests at another host."""
        public = URL(entry.record.public_url)
        url = URL(urljoin(entry.record.public_url.rstrip("/") + "/", ready.url or ""))
        if url.scheme != public.scheme or url.host != public.host:
            raise _Failed("check_failed", f"ready url is not on the member's public host {public.host}")
        target = URL(str(url).rstrip("/") + "/api/status")
        try:
            async with asyncio.timeout(self._s.check_timeout):
                async with self._http.get(target, headers={"Authorization": f"token {ready.token or ''}"},
                                          allow_redirects=False) as resp:
                    # The status line is the answer; the body (whatever a member's server sends) is never read.
                    if resp.status != 200:
                        raise _Failed("check_failed", f"the server answered HTTP {resp.status} with its token")
        except TimeoutError:
            raise _Failed("check_failed", f"the server did not answer within {self._s.check_timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise _Failed("check_failed", f"cannot reach the server: {exc.__class__.__name__}") from None

    async def _stop(self, entry: MemberEntry, launch_id: str) -> None:
        """Stop the canary's server (or its launch in progress); "unknown" is done, errors only logged."""
        try:
            await self._client.delete(entry, launch_id)
        except MemberCallError as exc:
            log.warning("stopping canary %s on member %s: %s", launch_id, entry.id, exc.message)

    def _result(self, timing: _Timing, *, outcome: str, reason: str | None) -> CanaryResult:
        ready, built, started = timing.ready, timing.built, timing.started
        ok = outcome == "ok"
        return CanaryResult(
            ok=ok, at=self._clock.now(), outcome=outcome,  # type: ignore[arg-type]
            time_to_ready=round(ready - started, 3) if ready is not None else None,
            build_seconds=round(built - started, 3) if built is not None and ready is not None else None,
            # Without a `built` event the whole time is the launch's (a member that does not report builds).
            launch_seconds=round(ready - (built if built is not None else started), 3) if ready is not None else None,
            reason=None if ok else (reason or outcome)[:_REASON_LIMIT],
        )

    def _record(self, member_id: str, health: MemberHealth, result: CanaryResult) -> None:
        log.info("canary on %s: %s%s", member_id, result.outcome,
                 f" in {result.time_to_ready:g} s" if result.time_to_ready is not None else f" ({result.reason})")
        was_ejected = health.canary_view().ejected
        health.record_canary(result, self._s.eject_after)
        self._metrics.canary(member_id, result.outcome, result)
        now_ejected = health.canary_view().ejected
        if now_ejected != was_ejected:
            log.warning("member %s %s by canary%s", member_id, "ejected" if now_ejected else "re-admitted",
                        f" ({result.reason})" if result.reason else "")

    def next_due_at(self) -> float | None:
        return self._schedule.next_due_at()

    async def run(self) -> None:
        """Run canaries forever: wake at the earliest due time (at least every second)."""
        try:
            while True:
                self.start_due()
                next_at = self._schedule.next_due_at()
                delay = _MAX_IDLE if next_at is None else min(_MAX_IDLE, max(0.01, next_at - self._clock.now()))
                await asyncio.sleep(delay)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel canaries in flight and wait for them (each stops its server on the way out)."""
        await self._inflight.cancel_all()
