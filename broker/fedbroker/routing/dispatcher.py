"""The dispatcher: admits a launch (spec filter, rate limit) and routes it, timed, logged and counted.

It is the one service the front-door handlers call; the decisions themselves are made by
the pure :func:`fedbroker.routing.rank` over the in-memory snapshot and health (no I/O).
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

from fedproto.clock import Clock
from fedproto.location import Location
from fedproto.repospec import RepoSpec
from fedproto.routing import RouteDecision

from ..config import BrokerConfig, ConfigError
from ..metrics import BrokerMetrics
from ..registry.snapshot import RegistrySnapshot, SnapshotHolder
from .health import HealthTable
from .live import LiveRouter
from .rank import RouteRequest, new_decision_id
from .ratelimit import RateDecision, RateLimiter, client_address
from .specfilter import SpecFilter

log = logging.getLogger(__name__)
# Its own logger, so operators can turn decision lines off (or on) apart from the rest.
decision_log = logging.getLogger("fedbroker.decisions")
_DETAILED_CANDIDATES = 10


@dataclass(frozen=True)
class Admission:
    """Whether a launch may be routed; when not, the status and message to answer with."""

    refusal: str | None
    status: int
    rate: RateDecision | None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


# Rate limiting off and the spec allowed: the common answer, made once.
_ADMITTED = Admission(None, 200, None)


class _GeoIP:
    """Client coordinates from a MaxMind-format database, through the optional ``maxminddb`` package."""

    def __init__(self, path: str) -> None:
        try:
            maxminddb = importlib.import_module("maxminddb")
        except ImportError:
            raise ConfigError(
                "routing.geoip_db is set but no GeoIP reader is installed (pip install maxminddb), "
                "or unset it and use routing.region_header"
            ) from None
        self._reader = maxminddb.open_database(path)

    def locate(self, ip: str) -> Location | None:
        try:
            rec: Any = self._reader.get(ip)
        except ValueError:
            return None
        loc = (rec or {}).get("location") or {}
        if "latitude" not in loc or "longitude" not in loc:
            return None
        return Location(lat=loc["latitude"], lon=loc["longitude"])


class Dispatcher:
    """Admission and routing for launches; one per app."""

    def __init__(
        self, config: BrokerConfig, snapshots: SnapshotHolder, health: HealthTable, metrics: BrokerMetrics, clock: Clock
    ) -> None:
        self._config = config
        self._snapshots = snapshots
        self._health = health
        self._metrics = metrics
        self._clock = clock
        self._filter = SpecFilter(config.specs)
        self._limiter = RateLimiter(config.rate_limit, clock)
        geoip_db = config.routing.geoip_db
        self._geoip = _GeoIP(str(config.resolve(geoip_db))) if geoip_db else None
        self._router = LiveRouter(config.routing, snapshots, health, clock)
        # Real launches need only the candidates failover may try.
        self._detail = max(_DETAILED_CANDIDATES, config.routing.max_attempts)

    def client_ip(self, headers: Mapping[str, str], remote: str | None) -> str:
        """The client's IP: the forwarding header's hop the trusted proxies vouch for, else the peer."""
        s = self._config.rate_limit
        return client_address(headers, remote, s.client_ip_header, s.trusted_proxies)

    def client_region(self, headers: Mapping[str, str]) -> str | None:
        name = self._config.routing.region_header
        value = headers.get(name, "").strip() if name else ""
        return value[:64] or None

    def admit(self, provider: str, spec: str, client_ip: str) -> Admission:
        """Apply the spec filter, then count the launch against the client's rate limit."""
        refusal = self._filter.refusal(provider, spec)
        if refusal is not None:
            self._metrics.refused("denied")
            return Admission(refusal, 403, None)
        rate = self._limiter.check(client_ip)
        if rate is None:
            return _ADMITTED
        if not rate.allowed:
            self._metrics.refused("rate_limited")
            return Admission(rate.message(self._clock.now()), 429, rate)
        return Admission(None, 200, rate)

    def decide(
        self, repo: RepoSpec, data: list[str], *, region: str | None = None, client_ip: str | None = None,
        dry_run: bool = False, count: bool = True,
    ) -> RouteDecision:
        """Rank members for this launch. Real decisions are timed, logged and (unless ``count`` is False,
        for a caller that sends the launch elsewhere and calls :meth:`launched` itself) count their
        launch at once against the chosen member; dry runs explain every member and count nothing."""
        location = self._geoip.locate(client_ip) if self._geoip is not None and client_ip else None
        request = RouteRequest(repo=repo, data=tuple(data), client_region=region, client_location=location)
        if dry_run:
            return self._router.explain(request, new_decision_id())
        started = time.perf_counter()
        decision = self._router.decide(request, new_decision_id(), self._detail)
        if count and decision.chosen is not None:
            self._router.launched(decision.chosen, request)
        elapsed = time.perf_counter() - started
        self._metrics.decision_seconds.observe(elapsed)
        if decision.chosen is None:
            self._metrics.refused("unroutable")
        if decision_log.isEnabledFor(logging.INFO):
            # One short key=value line (the dry-run API explains a decision in full).
            best = decision.candidates[0] if decision.candidates else None
            decision_log.info(
                "decision id=%s repo=%s chosen=%s cost=%s next=%s us=%d", decision.decision_id, decision.repo_key,
                decision.chosen or "-", f"{best.cost:g}" if best is not None and best.cost is not None else "-",
                ",".join(c.member_id for c in decision.candidates[1:4] if c.routable) or "-", elapsed * 1e6,
            )
        return decision

    def launched(self, member_id: str, repo: RepoSpec) -> None:
        """A launch of ``repo`` was sent to ``member_id`` outside its decision's choice (a sticky cookie)."""
        self._router.launched(member_id, RouteRequest(repo=repo))

    def snapshot(self) -> RegistrySnapshot:
        return self._snapshots.current

    def routable(self, member_id: str, provider: str, decision: RouteDecision | None = None) -> bool:
        """Whether the member could take a ``provider`` launch at the last decision (for sticky cookies,
        which may name a member outside the decision's detailed candidates). With ``decision``, also
        whether its datasets' serving policy allows the member and its ad says it serves the repo: a
        client's cookie must not choose one the data provider excluded or one that would refuse."""
        if decision is not None and decision.data:
            limit = self._snapshots.current.datasets.serving(decision.data)
            if limit is not None and member_id not in limit.allowed:
                return False
        return self._router.why_not(member_id, provider, decision.repo_key if decision is not None else None) is None

    def spec_refusal(self, provider: str, spec: str) -> str | None:
        """The spec filter alone (for dry runs, which must not count against the rate limit)."""
        return self._filter.refusal(provider, spec)


def nothing_routable_message(decision: RouteDecision) -> str:
    """Why no member can take a launch, at once and in words a user can act on."""
    if not decision.candidates:
        return "No member of this federation is registered yet. Please try again later."
    why = "; ".join(f"{c.member_id}: {c.reason}" for c in decision.candidates[:10])
    return f"No member can take this launch right now ({why}). Please try again later."
