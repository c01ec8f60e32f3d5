"""The launch service: launches in progress, their deadline, keepalives and clean endings.

It wraps ``backend.launch`` (or ``backend.build``) so that, whatever the
backend does, the broker gets a well-formed event stream: every event carries
``launch_id``; ``:keepalive`` comments flow while nothing happens; exactly one
terminal event ends it (``ready``/``built`` or ``failed``); a launch past
``launch_timeout`` ends in ``failed``/504 and its half-started server is
stopped; an exception in the backend becomes ``failed``/500 (logged here, never
shown to the client); a client that goes away mid-launch stops the launch too.
The spec is parsed here, once; the backend gets the parsed :class:`RepoSpec`.
Status codes are those of the one failure table, :mod:`fedproto.failures`.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import aclosing
import logging
from typing import AsyncIterator

from fedproto.errors import SpecError
from fedproto.failures import Failure, outcome_label
from fedproto.launch import BUILD_TERMINAL_PHASES, TERMINAL_PHASES, LaunchEvent, LaunchRequest
from fedproto.repospec import PROVIDERS, RepoSpec
from fedproto.sse import KEEPALIVE, with_keepalives

from .backends.base import Backend, failed
from .errors import Conflict
from .metrics import AgentMetrics

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 10.0
STOP_TIMEOUT = 30.0


def outcome_of(event: LaunchEvent) -> str:
    """The metric label for how a launch ended."""
    if event.phase in ("ready", "built"):
        return event.phase
    return outcome_label(event.status_code)


class ActiveLaunch:
    """One launch in progress: a producer task feeding a queue that ``frames()`` drains."""

    def __init__(self, service: LaunchService, request: LaunchRequest, repo: RepoSpec, build: bool) -> None:
        self.service = service
        self.request = request
        self.repo = repo
        self.build = build
        self.terminal = BUILD_TERMINAL_PHASES if build else TERMINAL_PHASES
        self.queue: asyncio.Queue[LaunchEvent] = asyncio.Queue()
        self.finished = asyncio.Event()
        self.ended_with: LaunchEvent | None = None
        self._aborted = False
        self._producer: asyncio.Task[None] | None = None

    @property
    def launch_id(self) -> str:
        return self.request.launch_id

    def _tag(self, event: LaunchEvent) -> LaunchEvent:
        return event.model_copy(update={"launch_id": self.launch_id})

    async def _produce(self) -> None:
        backend = self.service.backend
        source = backend.build(self.request, self.repo) if self.build else backend.launch(self.request, self.repo)
        try:
            async for event in source:
                self.queue.put_nowait(self._tag(event))
                if event.phase in self.terminal:
                    return
            self.queue.put_nowait(self._tag(failed("the backend ended without a result", Failure.ERROR)))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - turned into failed/500; the traceback stays in our log
            log.exception("launch %s: backend %s raised", self.launch_id, backend.kind)
            self.queue.put_nowait(self._tag(failed("the member hit an unexpected error while launching", Failure.ERROR)))
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()  # type: ignore[attr-defined]

    async def _cancel_producer(self) -> None:
        if self._producer is not None and not self._producer.done():
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._producer

    async def _stop_server(self) -> None:
        """Stop whatever the backend started for this launch; never raises."""
        try:
            await asyncio.wait_for(self.service.backend.stop_server(self.launch_id), STOP_TIMEOUT)
        except Exception:  # noqa: BLE001 - best effort; the backend's own stop() is the backstop
            log.exception("launch %s: stopping its server failed", self.launch_id)

    def abort(self, message: str, status_code: int) -> None:
        """End the stream with ``failed`` (shutdown, DELETE); the stream's reader stops the server."""
        if self._aborted or self.finished.is_set():
            return
        self._aborted = True
        if self._producer is not None:
            self._producer.cancel()
        self.queue.put_nowait(self._tag(failed(message, status_code)))

    async def _events(self) -> AsyncIterator[LaunchEvent]:
        """The backend's events as they come; a 504 ``failed`` once ``launch_timeout`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.service.launch_timeout
        while True:
            try:
                yield await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                yield self._tag(failed(f"launch did not finish within {self.service.launch_timeout:g} s", Failure.TIMEOUT))

    async def frames(self) -> AsyncIterator[bytes]:
        """The event stream, framed as BinderHub frames it, ending after the terminal event."""
        self._producer = asyncio.create_task(self._produce(), name=f"launch-{self.launch_id}")
        try:
            async with aclosing(with_keepalives(self._events(), self.service.keepalive_interval)) as events:
                async for event in events:
                    if event is None:
                        yield KEEPALIVE
                        continue
                    if event.phase in self.terminal:
                        self.ended_with = event
                    yield event.sse()
                    if self.ended_with is not None:
                        return
        finally:
            await self._finish()

    async def _finish(self) -> None:
        await self._cancel_producer()
        end = self.ended_with
        if end is None or end.phase == "failed":
            # Timed out, aborted, failed half-way or the client left: nothing may keep running.
            await self._stop_server()
        self.service.metrics.launch_outcome(outcome_of(end) if end else "cancelled")
        self.service.forget(self)
        self.finished.set()


class LaunchService:
    """Holds the launches in progress by ``launch_id``."""

    def __init__(
        self,
        backend: Backend,
        metrics: AgentMetrics,
        *,
        launch_timeout: float,
        dev: bool = False,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.launch_timeout = launch_timeout
        self.dev = dev
        self.keepalive_interval = keepalive_interval
        self._active: dict[str, ActiveLaunch] = {}

    def preflight(self, request: LaunchRequest) -> RepoSpec | LaunchEvent:
        """The parsed spec, or a ``failed`` event: 400 for a spec no member could take, 501 (fails
        over) for a provider this member does not serve, since another member may serve it."""
        if request.provider in PROVIDERS and request.provider not in self.backend.providers:
            return failed(
                f"provider {request.provider!r} is not supported by this member "
                f"(supported: {', '.join(self.backend.providers)})",
                Failure.NOT_SUPPORTED,
            )
        try:
            return RepoSpec.parse(request.provider, request.spec, allow_file=self.dev)
        except SpecError as exc:
            return failed(exc.message, Failure.BAD_REQUEST)

    def open(self, request: LaunchRequest, repo: RepoSpec, *, build: bool = False) -> ActiveLaunch:
        """Register a launch of ``repo`` (from :meth:`preflight`); a ``launch_id`` already in progress is a 409."""
        if request.launch_id in self._active:
            raise Conflict(f"launch {request.launch_id} is already in progress", reason="duplicate_launch")
        launch = ActiveLaunch(self, request, repo, build)
        self._active[request.launch_id] = launch
        return launch

    def forget(self, launch: ActiveLaunch) -> None:
        if self._active.get(launch.launch_id) is launch:
            del self._active[launch.launch_id]

    @property
    def active(self) -> list[str]:
        return list(self._active)

    async def delete(self, launch_id: str) -> bool:
        """Stop a launch in progress or its running server; False when neither is known."""
        launch = self._active.get(launch_id)
        if launch is not None:
            launch.abort("launch cancelled", Failure.CANCELLED)
            await launch.finished.wait()
            return True
        return await self.backend.stop_server(launch_id)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """End every open stream with ``failed`` "agent shutting down" and wait for them."""
        launches = list(self._active.values())
        for launch in launches:
            launch.abort("agent shutting down", Failure.UNAVAILABLE)
        if launches:
            await asyncio.wait([asyncio.ensure_future(l.finished.wait()) for l in launches], timeout=timeout)
