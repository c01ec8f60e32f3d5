"""The registry's word on datasets: which members hold each one, and which may serve it at all.

A dataset declaration is written by an admin, or by the dataset's provider with a dataset-owner
key the broker knows (for ids under the prefixes an admin gave that owner). It names:

* ``holders``: the members that store the dataset (routing prefers them: data locality);
* ``servers``: the members allowed to serve launches that need it, or None for any member
  (the data provider's policy: a dataset with one launches nowhere else, and fails closed
  with a clear message when none of them can take the launch).

Members' own claims do not widen this: a status ad can only narrow what a member is said to
hold (see ``routing/claims.py``), never add to it. Pure data and queries, no I/O; routing
reads them from the :class:`~fedbroker.registry.snapshot.RegistrySnapshot`.

For routing (``rank`` and the routing index): :meth:`DatasetPolicy.serving` is the one call
that restricts a launch's candidates; :meth:`DatasetPolicy.holdings` is what the registry
says each member stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from fedproto.datasets import Dataset, normalise_dataset_id


@dataclass(frozen=True)
class DatasetRule:
    """One declaration, as stored (``id`` normalised)."""

    id: str
    prefix: bool
    holders: frozenset[str]
    servers: frozenset[str] | None  # None: any member may serve it
    size_bytes: int | None = None
    declared_by: str = ""

    def matches(self, wanted: str) -> bool:
        """Whether this rule covers the (normalised) dataset id ``wanted``."""
        return wanted.startswith(self.id) if self.prefix else wanted == self.id

    def as_dataset(self) -> Dataset:
        return Dataset(id=self.id, prefix=self.prefix, size_bytes=self.size_bytes)


@dataclass(frozen=True)
class ServingLimit:
    """The members a launch may go to because of its datasets' policies, and why."""

    allowed: frozenset[str]
    reason: str  # why every other member is unroutable for this launch


@dataclass(frozen=True)
class DatasetPolicy:
    """Every declaration, indexed for routing. Immutable; rebuilt with each registry snapshot."""

    rules: tuple[DatasetRule, ...] = ()
    _exact: Mapping[str, DatasetRule] = field(default_factory=dict, repr=False, compare=False)
    _prefixed: tuple[DatasetRule, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, rules: Iterable[DatasetRule]) -> DatasetPolicy:
        rules = tuple(sorted(rules, key=lambda r: (r.id, r.prefix)))
        return cls(rules, {r.id: r for r in rules if not r.prefix}, tuple(r for r in rules if r.prefix))

    def rules_for(self, wanted: str) -> list[DatasetRule]:
        """Every rule covering the (normalised) dataset id, exact first, then prefixes longest first."""
        found = [self._exact[wanted]] if wanted in self._exact else []
        found += sorted((r for r in self._prefixed if r.matches(wanted)), key=lambda r: -len(r.id))
        return found

    def serving(self, wanted: Iterable[str]) -> ServingLimit | None:
        """Which members may serve a launch needing the (normalised) datasets ``wanted``: every
        covering rule with a server list must allow the member. None when no rule restricts it."""
        allowed: frozenset[str] | None = None
        named: list[str] = []
        for w in wanted:
            for rule in self.rules_for(w):
                if rule.servers is None:
                    continue
                allowed = rule.servers if allowed is None else allowed & rule.servers
                named.append(w)
        if allowed is None:
            return None
        which = ", ".join(dict.fromkeys(named))
        members = ", ".join(sorted(allowed)) or "none"
        return ServingLimit(allowed, f"not allowed to serve {which} (its data provider allows: {members})")

    def holdings(self) -> dict[str, tuple[Dataset, ...]]:
        """Member id -> the datasets the declarations say it holds."""
        held: dict[str, list[Dataset]] = {}
        for rule in self.rules:
            for member_id in rule.holders:
                held.setdefault(member_id, []).append(rule.as_dataset())
        return {m: tuple(ds) for m, ds in held.items()}


EMPTY_POLICY = DatasetPolicy.of(())


def normalised_rule(dataset_id: str, *, prefix: bool, holders: Iterable[str], servers: Iterable[str] | None,
                    size_bytes: int | None = None, declared_by: str = "") -> DatasetRule:
    """A rule with its id in the one spelling routing compares (see ``normalise_dataset_id``)."""
    return DatasetRule(
        id=normalise_dataset_id(dataset_id), prefix=prefix, holders=frozenset(holders),
        servers=None if servers is None else frozenset(servers), size_bytes=size_bytes, declared_by=declared_by,
    )
