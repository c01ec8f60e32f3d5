"""The broker's Prometheus metrics, in a registry of the app's own (never the global one).

Labels are bounded: member ids (bounded by the registry) and fixed enums. Repo specs never
become label values, since every new repo would be a new series. Enum values are created up
front so dashboards show zeros instead of gaps.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fedproto.canary import CANARY_OUTCOMES, CanaryResult

from .routing.health import HealthState, HealthView

# How one launch attempt on a member ended. `refused`: the member turned this launch away (429:
# rate limit, quota, full) and it went on elsewhere; `abandoned`: the client left before `ready`
# and the broker asked the member to stop it.
LAUNCH_OUTCOMES = ("ready", "failed", "retried", "repo_error", "refused", "abandoned")
# Launches refused before any member was involved are counted under this member label.
NO_MEMBER = "none"
REFUSAL_OUTCOMES = ("rate_limited", "denied", "bad_request", "unroutable")
# How one canary ended; `skipped` (the member had no room) is not a result and not in its history.
CANARY_METRIC_OUTCOMES = (*CANARY_OUTCOMES, "skipped")
# The parts of a canary's time-to-ready: total, build (request to `built`), launch (`built` to `ready`).
READY_PARTS = ("total", "build", "launch")
# One-hot health states; `ejected` and `expired` override the poll state.
HEALTH_STATES = tuple(s.value for s in HealthState) + ("ejected", "expired")


def health_label(view: HealthView) -> str:
    """The one state a dashboard shows for a member."""
    if view.ad is not None and view.ad_expired:
        return "expired"
    # Ejected by launch failures or by canaries: out of routing though its polls may pass.
    if view.ejected or view.canary.ejected:
        return "ejected"
    return view.state.value


class _HealthCollector(Collector):
    """Reads member health and load at scrape time, so removed members leave no stale series."""

    def __init__(self, views: Callable[[], Mapping[str, HealthView]]) -> None:
        self._views = views

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "fedbroker_member_health", "1 for the member's current health state.", labels=["member", "state"]
        )
        load = GaugeMetricFamily("fedbroker_member_load", "Member load (used+building)/total, 0..1.", labels=["member"])
        for member_id, view in sorted(self._views().items()):
            current = health_label(view)
            for s in HEALTH_STATES:
                state.add_metric([member_id, s], 1.0 if s == current else 0.0)
            if view.load is not None:
                load.add_metric([member_id], view.load)
        yield state
        yield load


class BrokerMetrics:
    """Every broker metric, registered in ``self.registry``."""

    def __init__(self, health_views: Callable[[], Mapping[str, HealthView]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.launches = Counter(
            "fedbroker_launches", "Launch attempts by member and outcome.", ["member", "outcome"], registry=self.registry
        )
        self.decision_seconds = Histogram(
            "fedbroker_routing_decision_seconds",
            "Time to rank members for one launch.",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=self.registry,
        )
        self.failovers = Counter(
            "fedbroker_failovers", "Launches moved to the next member, by the member that failed.", ["member"],
            registry=self.registry,
        )
        self.streams_open = Gauge("fedbroker_relay_streams_open", "Launch streams being relayed now.", registry=self.registry)
        self.canaries = Counter(
            "fedbroker_canaries", "Canary launches by member and outcome.", ["member", "outcome"], registry=self.registry
        )
        self.canary_ready_seconds = Histogram(
            "fedbroker_canary_time_to_ready_seconds",
            "Time-to-ready measured by canaries, by member and part (total, build, launch).",
            ["member", "part"],
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self._canaried: set[str] = set()
        self.registry.register(_HealthCollector(health_views))
        for outcome in REFUSAL_OUTCOMES:
            self.launches.labels(NO_MEMBER, outcome)
        self._known: set[str] = set()

    def member_seen(self, member_id: str) -> None:
        """Create a member's series at zero the first time it is seen."""
        if member_id in self._known:
            return
        self._known.add(member_id)
        for outcome in LAUNCH_OUTCOMES:
            self.launches.labels(member_id, outcome)
        self.failovers.labels(member_id)

    def launch(self, member_id: str, outcome: str) -> None:
        assert outcome in LAUNCH_OUTCOMES, outcome
        self.member_seen(member_id)
        self.launches.labels(member_id, outcome).inc()

    def refused(self, outcome: str) -> None:
        assert outcome in REFUSAL_OUTCOMES, outcome
        self.launches.labels(NO_MEMBER, outcome).inc()

    def failover(self, member_id: str) -> None:
        self.member_seen(member_id)
        self.failovers.labels(member_id).inc()

    def canary_member_seen(self, member_id: str) -> None:
        """Create a canaried member's canary series at zero (dashboards show zeros, not gaps)."""
        if member_id in self._canaried:
            return
        self._canaried.add(member_id)
        for outcome in CANARY_METRIC_OUTCOMES:
            self.canaries.labels(member_id, outcome)
        for part in READY_PARTS:
            self.canary_ready_seconds.labels(member_id, part)

    def canary(self, member_id: str, outcome: str, result: CanaryResult | None = None) -> None:
        assert outcome in CANARY_METRIC_OUTCOMES, outcome
        self.canary_member_seen(member_id)
        self.canaries.labels(member_id, outcome).inc()
        if result is None or not result.ok:
            return
        for part, seconds in (("total", result.time_to_ready), ("build", result.build_seconds),
                              ("launch", result.launch_seconds)):
            if seconds is not None:
                self.canary_ready_seconds.labels(member_id, part).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
