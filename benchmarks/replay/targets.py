"""Launch targets: a trace row's repo, ref and data parsed once and shared by every launch of it.

A million-launch trace names a few tens of thousands of distinct targets; parsing the spec,
normalising dataset ids and building the broker's ``RouteRequest`` once per target instead of
once per launch is most of what makes the replay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fedbroker.routing.rank import RouteRequest

from .members import SimMember
from .trace import Launch, parse_repo


@dataclass(frozen=True, slots=True)
class Target:
    """Everything about a launch that does not change between launches of it."""

    repo_key: str
    image: tuple[str, str]  # (repo key, ref): one image per ref
    datasets: tuple[str, ...]  # normalised ids the launch needs (``?data=`` and data-provider records)
    request: RouteRequest  # what the broker's router is given
    storing: tuple[int, ...]  # members storing every needed dataset (empty when none is needed)


class TargetCache:
    """Targets by trace row, made on first sight."""

    def __init__(self, members: Sequence[SimMember]) -> None:
        self._members = members
        self._targets: dict[tuple[str, str, str, tuple[str, ...]], Target] = {}

    def __len__(self) -> int:
        return len(self._targets)

    def get(self, launch: Launch) -> Target:
        key = launch.target
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._make(launch)
        return target

    def _make(self, launch: Launch) -> Target:
        repo = parse_repo(launch.provider, launch.spec, launch.ref)
        request = RouteRequest(repo=repo, data=launch.data)
        datasets = tuple(request.needed_datasets())
        storing = tuple(m.index for m in self._members if datasets and m.stores_all(datasets))
        return Target(repo.key, (repo.key, repo.ref), datasets, request, storing)

