"""The agent's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

# Label values are fixed enums created up front, so dashboards show zeros instead of gaps.
LAUNCH_OUTCOMES = ("ready", "built", "failed", "rejected", "timeout", "error", "cancelled")
AUTH_FAILURE_REASONS = (
    "missing_token",
    "oversize_token",
    "malformed_token",
    "bad_alg",
    "wrong_type",
    "unknown_key",
    "bad_signature",
    "missing_claim",
    "not_yet_valid",
    "expired",
    "lifetime_too_long",
    "wrong_issuer",
    "wrong_audience",
    "wrong_method",
    "wrong_path",
    "wrong_body",
    "replayed",
    "wrong_launch",
    "replay_cache_full",
    "not_enrolled",
    "body_too_large",
    "other",
)


class AgentMetrics:
    """Counters and gauges of one agent; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.launches = Counter(
            "fedmember_launches", "Launches by outcome.", ["outcome"], registry=self.registry
        )
        self.auth_failures = Counter(
            "fedmember_auth_failures", "Rejected requests by reason.", ["reason"], registry=self.registry
        )
        self.servers_running = Gauge("fedmember_servers_running", "Servers running now.", registry=self.registry)
        self.servers_building = Gauge("fedmember_servers_building", "Launches building now.", registry=self.registry)
        self.servers_total = Gauge("fedmember_servers_capacity", "Servers allowed.", registry=self.registry)
        for outcome in LAUNCH_OUTCOMES:
            self.launches.labels(outcome=outcome)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason=reason)

    def launch_outcome(self, outcome: str) -> None:
        self.launches.labels(outcome=outcome if outcome in LAUNCH_OUTCOMES else "error").inc()

    def auth_failure(self, reason: str) -> None:
        # An unknown reason must not create a new series (unbounded labels).
        self.auth_failures.labels(reason=reason if reason in AUTH_FAILURE_REASONS else "other").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
