"""The backend contract: what runs notebook servers behind a member agent.

A backend turns a :class:`~fedproto.launch.LaunchRequest` into a running
notebook server and reports what the site can do. The agent owns everything
around it (request signatures, launch ids, the overall launch timeout, the
status ad, parsing and refusing specs); a backend only talks to its compute.

Backends are found by ``kind`` among the entry points of the group
``binder_federation.backends`` (see :mod:`fedmember.backends`), so a separate
package can ship one: declare
``[project.entry-points."binder_federation.backends"] mykind = "mypkg:MyBackend"``
and set ``kind = "mykind"`` under ``[backend]`` in the agent's config.

To write a backend, subclass :class:`Backend` and:

Must implement
    ``launch(request, repo)``  an async iterator of :class:`LaunchEvent` that ends
        with exactly one terminal event: ``ready`` (with ``url`` ending in ``/``
        and ``token``) or ``failed`` (made with :func:`failed`, a ``message`` and
        a :class:`~fedproto.failures.Failure` code: ``CAPACITY`` when full,
        ``UNBUILDABLE`` or ``NOT_FOUND`` for the repository's fault, which is
        final, ``UNAVAILABLE``, ``UPSTREAM`` or ``TIMEOUT`` for site trouble,
        which the broker fails over). ``repo`` is the request's spec, already
        parsed and checked (:class:`~fedproto.repospec.RepoSpec`), and its
        provider is one of ``providers``: never parse ``request.spec`` again.
        It must not raise for ordinary launch failures; an exception is turned
        into ``failed``/``ERROR`` by the agent. Progress events use BinderHub's
        phases.
    ``stop_server(launch_id)``  stop what ``launch`` started; return False if
        the id is unknown. Treat "already gone" as done.
    ``health()``  a list of :class:`HealthCheck` (BinderHub's ``/health`` shape).
    ``capacity()``  a :class:`Capacity`: ``total`` servers allowed, ``used``
        now, ``building`` now.

May override
    ``start()`` / ``stop()``  begin and end background work (culling idle
        servers, watching a cluster). ``stop()`` must stop every server this
        backend started: it is the full teardown (tests, a backend whose
        servers cannot outlive the agent).
    ``adopt()`` / ``detach()``  the restart hooks (see "Agent restarts" below).
    ``build(request, repo)``  build (or fetch) the environment only, ending in
        ``built`` or ``failed``. The default answers ``failed``/``NOT_SUPPORTED``.
    ``images()``  repo keys (``RepoSpec.key``) whose environment is already
        built here; the status ad summarises them so the broker avoids rebuilds.
    ``versions()``  version strings to publish.
    ``browser_launch_url()``  a base URL where browsers can launch on this
        site's own BinderHub (``/build`` and ``/v2`` there), for a broker in
        redirect mode. The default (None) leaves the agent's ticket endpoint.

Agent restarts
    The agent calls ``start()``, then ``adopt()``, when it starts, and
    ``detach()`` when it shuts down (SIGTERM from a ``helm upgrade``, a node
    drain, a liveness kill). The default ``detach()`` calls ``stop()``, so a
    backend that overrides neither stops every server with the agent: right
    for the ``local`` backend, whose servers are the agent's child processes.

    A backend whose servers live outside the agent process (pods, a hub's
    servers) should keep users' sessions across a restart:

    * ``detach()`` ends background work and closes clients but leaves every
      *ready* server running. Launches still in progress are not sessions
      yet: the agent aborts them first and ``stop_server`` cleans them up.
    * ``adopt()`` finds the servers a previous agent process left (by label,
      by a naming convention, from the hub's API: never from local memory),
      takes them over so they count in ``capacity()``, are culled like its
      own, and ``stop_server(launch_id)`` stops them with the same launch
      id the broker knows; servers it cannot map back to a launch, or that
      never became ready (orphans of a killed agent), it stops. Returns the
      adopted launch ids. It runs once, before the agent serves requests;
      it must not raise for an unreachable site (log and return what it
      has; the next ``capacity()`` and cull pass see the rest).

Each backend declares ``kind`` (the config's ``kind``), ``providers`` (the
provider prefixes it can launch) and ``Config``, a pydantic model of its own
settings (every field with a ``description``; the chart schema is generated
from them). Backends are constructed with their config and a
:class:`BackendContext`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, ClassVar, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedproto.clock import Clock, SystemClock
from fedproto.datasets import Dataset
from fedproto.failures import Failure
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec
from fedproto.status import Capacity, HealthCheck


class BackendConfig(BaseModel):
    """Base of each backend's settings; unknown keys are a configuration error."""

    model_config = ConfigDict(extra="forbid")

    kind: str


class RepoRule(BaseModel):
    """A setting chosen by repository: the first rule whose ``match`` is found in the repo key wins.

    Backends subclass it with the value they choose (an image, user options).
    """

    model_config = ConfigDict(extra="forbid")

    match: str = Field(description="Regular expression searched in the repo key (`provider:repo`, e.g. `gh:org/repo`).")

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def matches(self, repo: RepoSpec) -> bool:
        return re.search(self.match, repo.key) is not None


RuleT = TypeVar("RuleT", bound=RepoRule)


def first_match(rules: Sequence[RuleT], repo: RepoSpec) -> RuleT | None:
    """The first rule that matches ``repo``, or None."""
    return next((rule for rule in rules if rule.matches(repo)), None)


@dataclass
class BackendContext:
    """What the agent tells its backend about the site."""

    member_id: str
    state_dir: Path  # a directory the backend may keep state in (caches, clones, logs)
    public_url: str = ""
    dev: bool = False  # allow file:// repos and plain http on loopback
    fetch_allow: list[str] = field(default_factory=list)  # non-public networks repositories may come from
    datasets: list[Dataset] = field(default_factory=list)
    cors_allow_origins: list[str] = field(default_factory=list)
    clock: Clock = field(default_factory=SystemClock)
    # The CA bundle every outbound TLS call trusts ([member] ca_bundle; None: the system store).
    ca_bundle: str | None = None


class Backend(ABC):
    """Runs notebook servers for a member. See the module docstring for the contract."""

    kind: ClassVar[str]
    providers: ClassVar[tuple[str, ...]]
    Config: ClassVar[type[BackendConfig]]
    # Repo-key globs the status ad lists (``fedproto.repoglob``); None: every repo of ``providers``.
    serves: tuple[str, ...] | None = None

    def __init__(self, config: BackendConfig, context: BackendContext) -> None:
        self.config = config
        self.context = context

    async def start(self) -> None:
        """Begin background work. Default: nothing."""

    async def stop(self) -> None:
        """Stop background work and every server this backend started. Default: nothing."""

    async def adopt(self) -> list[str]:
        """Take over the servers a previous agent process left running; their launch ids. Default: none."""
        return []

    async def detach(self) -> None:
        """The agent is shutting down: end background work. Default: ``stop()``, servers included.

        Override it, with ``adopt()``, to leave ready servers running for the next agent process.
        """
        await self.stop()

    @abstractmethod
    def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        """Build if needed and start a server for ``repo``; yield events ending in ``ready`` or ``failed``."""

    async def build(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        """Build only, ending in ``built`` or ``failed``. Default: not supported."""
        yield failed(f"backend {self.kind} cannot build without launching", Failure.NOT_SUPPORTED)

    @abstractmethod
    async def stop_server(self, launch_id: str) -> bool:
        """Stop the server of ``launch_id``; False when unknown."""

    def server_address(self, launch_id: str) -> tuple[str, int] | None:
        """The loopback (host, port) the agent fronts at ``/servers/<launch_id>/`` (see serverproxy),
        only for a live launch of this backend. Default: None (nothing fronted)."""
        return None

    @abstractmethod
    async def health(self) -> list[HealthCheck]:
        """Checks of the compute this backend drives."""

    @abstractmethod
    async def capacity(self) -> Capacity:
        """Servers allowed, running and being built."""

    async def images(self) -> list[str]:
        """Repo keys whose environment is already built here. Default: none."""
        return []

    def versions(self) -> dict[str, str]:
        return {}

    def browser_launch_url(self) -> str | None:
        """A BinderHub base URL browsers may launch on directly. Default: none."""
        return None


def failed(message: str, status_code: Failure | int) -> LaunchEvent:
    """A terminal ``failed`` event with a code of the failure table; messages end in a newline as BinderHub's do."""
    return LaunchEvent(phase="failed", message=message.rstrip("\n") + "\n", status_code=int(status_code))
