"""The routing index kept in step with the registry snapshot and the health table, plus what each
real decision leaves behind: provisional load and a pending image at the member it names.

This is where health and registry changes reach routing (the integration point): before each
decision the index takes the members whose view the health table changed (``HealthTable.watch``)
and the registry entries that changed by identity, and updates those members only.

*Provisional load.* A member's load comes from its last status ad, which is up to one poll
interval old. A decision therefore counts its launch against the member at once (the member's
``recent_launches``, until its next ad), so a burst of launches spreads instead of landing on the
member that looked idlest when the burst began. In redirect mode, this count is the only load the
broker ever sees for the launches it sends.
"""

from __future__ import annotations

from fedproto.clock import Clock
from fedproto.routing import RouteDecision

from ..config import RoutingSettings
from ..registry.datasetpolicy import ServingLimit
from ..registry.snapshot import SnapshotHolder
from .health import HealthTable
from .index import RoutingIndex
from .pending import PendingImages
from .rank import RouteRequest


class LiveRouter:
    """Decisions over the current snapshot and health, through a :class:`RoutingIndex`."""

    def __init__(self, settings: RoutingSettings, snapshots: SnapshotHolder, health: HealthTable, clock: Clock) -> None:
        self._settings = settings
        self._snapshots = snapshots
        self._health = health
        self._clock = clock
        self._index = RoutingIndex(settings)
        self._changed = health.watch()
        self._pending = PendingImages()

    def _sync(self) -> None:
        views = self._health.live()  # read at once: only the changed members' views are looked at
        changed = list(self._changed)
        self._changed.clear()
        self._index.update(self._snapshots.current, views, changed)

    def _pending_for(self, request: RouteRequest) -> frozenset[str]:
        return self._pending.at(request.image, self._clock.now())

    def _limit(self, request: RouteRequest) -> ServingLimit | None:
        """The data providers' serving policy for this launch's datasets (registry declarations)."""
        if not request.data and not request.repo.dataset_id:
            return None
        return self._snapshots.current.datasets.serving(request.needed_datasets())

    def decide(self, request: RouteRequest, decision_id: str, detail: int) -> RouteDecision:
        """The best ``detail`` candidates for a real launch (costs without their parts)."""
        self._sync()
        return self._index.decide(request, decision_id, detail, self._pending_for(request), self._limit(request))

    def explain(self, request: RouteRequest, decision_id: str) -> RouteDecision:
        """Every member, ranked and explained part by part (dry runs, ``--explain``)."""
        self._sync()
        return self._index.explain(request, decision_id, self._pending_for(request), self._limit(request))

    def launched(self, member_id: str, request: RouteRequest) -> None:
        """A launch of ``request`` goes to ``member_id``: count it as provisional load now, and, when
        the member does not list the image yet, remember that it is building there."""
        self._health.member(member_id).record_launch_started()
        ttl = self._settings.pending_image_seconds
        image = request.image
        if ttl > 0 and not self._index.holds(member_id, image):
            self._pending.add(image, member_id, self._clock.now() + ttl)

    def why_not(self, member_id: str, provider: str, repo_key: str | None = None) -> str | None:
        """Why the member could not take a ``provider`` launch (of ``repo_key``) now (None: it could)."""
        self._sync()
        return self._index.why_not(member_id, provider, repo_key)
