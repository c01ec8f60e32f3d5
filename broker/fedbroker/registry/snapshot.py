"""The in-memory registry snapshot that routing reads (never the database per request)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from fedproto.datasets import Dataset
from fedproto.keys import PublicKeySet
from fedproto.member import MemberRecord, MemberState

from .datasetpolicy import EMPTY_POLICY, DatasetPolicy


@dataclass(frozen=True)
class MemberEntry:
    """One member as routing and health see it: its record, its verification keys, and the
    datasets dataset declarations say it holds (beside its record's own)."""

    record: MemberRecord
    keys: PublicKeySet
    declared: tuple[Dataset, ...] = ()

    @property
    def id(self) -> str:
        return self.record.id


@dataclass(frozen=True)
class RegistrySnapshot:
    """An immutable view of the registry at one revision."""

    revision: int
    members: Mapping[str, MemberEntry] = field(default_factory=lambda: MappingProxyType({}))
    datasets: DatasetPolicy = EMPTY_POLICY

    def in_states(self, *states: MemberState) -> list[MemberEntry]:
        return [m for m in self.members.values() if m.record.state in states]


class SnapshotHolder:
    """Holds the current snapshot; swapping it is one assignment, so readers never lock."""

    def __init__(self, initial: RegistrySnapshot | None = None) -> None:
        self._current = initial or RegistrySnapshot(revision=0)
        self._listeners: list[Callable[[RegistrySnapshot], None]] = []

    @property
    def current(self) -> RegistrySnapshot:
        return self._current

    def replace(self, snapshot: RegistrySnapshot) -> None:
        self._current = snapshot
        for listener in list(self._listeners):
            listener(snapshot)

    def subscribe(self, listener: Callable[[RegistrySnapshot], None]) -> None:
        self._listeners.append(listener)
