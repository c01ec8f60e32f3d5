"""Every query of the broker's Grafana dashboard names a metric the broker exports, with label names and label
values it exports: read from a real BrokerMetrics registry's exposition after it has seen a member."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedbroker.metrics import BrokerMetrics
from fedbroker.routing.canary import CanaryView
from fedbroker.routing.health import HealthState

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/federation-broker/dashboards/broker.json"
SELECTOR = re.compile(r"\b(fedbroker_[a-z_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported() -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> values, from a registry that has seen one member (every series is created up front)."""
    view = SimpleNamespace(ad=None, ad_expired=False, ejected=False, state=next(iter(HealthState)), load=0.5,
                           canary=CanaryView())
    metrics = BrokerMetrics(lambda: {"uni-x": view})
    metrics.member_seen("uni-x")
    for name in ("canary_member_seen",):
        getattr(metrics, name, lambda member: None)("uni-x")
    metrics.decision_seconds.observe(0.001)
    samples: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return samples


def queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def problems(expr: str, samples: dict[str, dict[str, set[str]]]) -> list[str]:
    found, labels_of_expr = [], set()
    for name, selector in SELECTOR.findall(expr):
        if name not in samples:
            found.append(f"{name} is not exported")
            continue
        labels = samples[name]
        labels_of_expr |= set(labels)
        for label, op, value in MATCHER.findall(selector or ""):
            if label == "job" or "$" in value:
                continue  # set by Prometheus / a dashboard variable
            values = labels.get(label)
            if values is None:
                found.append(f"{name} has no label {label}")
            elif op == "=" and value not in values:
                found.append(f'{name}{{{label}="{value}"}} matches nothing: {label} is one of {sorted(values)}')
            elif op == "=~" and not any(re.fullmatch(value, v) for v in values):
                found.append(f'{name}{{{label}=~"{value}"}} matches nothing: {label} is one of {sorted(values)}')
    for group in GROUPING.findall(expr):
        for label in (g.strip() for g in group.split(",") if g.strip()):
            if label not in labels_of_expr:
                found.append(f"grouping by {label}, which no metric of the query has")
    return found


@pytest.mark.parametrize(("title", "expr"), queries(), ids=[t for t, _ in queries()])
def test_dashboard_query_matches_exported_metrics_and_label_values(title: str, expr: str) -> None:
    assert not problems(expr, exported()), expr


@pytest.mark.parametrize("expr", [
    'sum(rate(fedbroker_launches_total{outcome="success"}[5m]))',
    'sum(rate(fedbroker_launchs_total[5m]))',
    'sum by (site) (rate(fedbroker_launches_total[5m]))',
    'max(fedbroker_member_health{state=~"sick|dead"})',
])
def test_the_check_catches_a_wrong_query(expr: str) -> None:
    assert problems(expr, exported())
