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
from .rank import RouteRequest, RoutingMemo, new_decision_id, rank
from .ratelimit import RateDecision, RateLimiter, client_address
from .specfilter import SpecFilter

log = logging.getLogger(__name__)
_LOGGED_CANDIDATES = 8
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
        self._memo = RoutingMemo()

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
        if rate is not None and not rate.allowed:
            self._metrics.refused("rate_limited")
            return Admission(rate.message(self._clock.now()), 429, rate)
        return Admission(None, 200, rate)

    def decide(
        self, repo: RepoSpec, data: list[str], *, region: str | None = None, client_ip: str | None = None,
        dry_run: bool = False,
    ) -> RouteDecision:
        """Rank members for this launch. Real decisions are logged and timed; dry runs are not."""
        location = self._geoip.locate(client_ip) if self._geoip is not None and client_ip else None
        request = RouteRequest(repo=repo, data=tuple(data), client_region=region, client_location=location)
        started = time.perf_counter()
        settings = self._config.routing
        # Real launches need only the candidates failover may try; dry runs explain every member.
        detail = None if dry_run else max(_DETAILED_CANDIDATES, settings.max_attempts)
        decision = rank(self._snapshots.current, self._health.views(), request, settings,
                        decision_id=new_decision_id(), memo=self._memo, detail=detail)
        if dry_run:
            return decision
        self._metrics.decision_seconds.observe(time.perf_counter() - started)
        if decision.chosen is None:
            self._metrics.refused("unroutable")
        if log.isEnabledFor(logging.INFO):
            # The first candidates only: with 1,000 members, formatting all of them on every
            # launch cost more than the decision. The dry-run API explains a decision in full.
            shown = decision.candidates[:_LOGGED_CANDIDATES]
            log.info(
                "decision %s repo=%s chosen=%s candidates=%s%s", decision.decision_id, decision.repo_key,
                decision.chosen or "-",
                " ".join(f"{c.member_id}={c.cost:g}" if c.routable else f"{c.member_id}=x" for c in shown),
                f" (+{len(decision.candidates) - len(shown)} more)" if len(decision.candidates) > len(shown) else "",
            )
        return decision

    def snapshot(self) -> RegistrySnapshot:
        return self._snapshots.current

    def routable(self, member_id: str, provider: str) -> bool:
        """Whether the member could take a ``provider`` launch at the last decision (for sticky cookies,
        which may name a member outside the decision's detailed candidates)."""
        return self._memo.why_not(member_id, provider) is None

    def spec_refusal(self, provider: str, spec: str) -> str | None:
        """The spec filter alone (for dry runs, which must not count against the rate limit)."""
        return self._filter.refusal(provider, spec)


def nothing_routable_message(decision: RouteDecision) -> str:
    """Why no member can take a launch, at once and in words a user can act on."""
    if not decision.candidates:
        return "No member of this federation is registered yet. Please try again later."
    why = "; ".join(f"{c.member_id}: {c.reason}" for c in decision.candidates[:10])
    return f"No member can take this launch right now ({why}). Please try again later."
