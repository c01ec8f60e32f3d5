"""The public view of the federation: the /health report and the /api/v1/federation summary.

Both are computed from the in-memory snapshot and health, never the database, and show
nothing secret: no keys, no agent URLs, no last error texts beyond a short reason.
"""

from __future__ import annotations

from typing import Any, Mapping

from fedproto import __version__

from ..metrics import health_label
from ..registry.snapshot import RegistrySnapshot
from ..routing.facts import stored_datasets
from ..routing.health import HealthView
from ..routing.rank import availability
from ..routing.slo import OVERALL, SloTracker


def health_report(snapshot: RegistrySnapshot, health: Mapping[str, HealthView]) -> dict[str, Any]:
    """BinderHub's ``/health`` shape: ``ok`` when at least one member can take launches.

    Per-member checks are informational (``_ignore_failure``, as BinderHub marks its quota
    check): one member down must not fail the federation's health.
    """
    reasons = availability(snapshot, health)
    routable = [m for m, why in reasons.items() if why is None]
    checks: list[dict[str, Any]] = [
        {"service": "Routable members", "ok": bool(routable), "count": len(routable), "members": routable}
    ]
    for member_id, why in reasons.items():
        view = health.get(member_id)
        checks.append({
            "service": f"Member {member_id}",
            "ok": why is None,
            "state": snapshot.members[member_id].record.state.value,
            "health": health_label(view) if view is not None else "unknown",
            **({"reason": why} if why else {}),
            "_ignore_failure": True,
        })
    return {"ok": bool(routable), "checks": checks}


def _member_summary(entry_id: str, snapshot: RegistrySnapshot, view: HealthView | None, why: str | None) -> dict[str, Any]:
    record = snapshot.members[entry_id].record
    ad = view.ad if view is not None else None
    location = ad.location if ad is not None and ad.location.model_dump(exclude_none=True) else record.location
    # What routing believes (the registry's word, narrowed by the ad), not what the ad claims.
    datasets = {d.id: d for d in stored_datasets(snapshot.members[entry_id], view)}
    return {
        "id": record.id,
        "display_name": record.display_name,
        "public_url": record.public_url,
        "state": record.state.value,
        "health": health_label(view) if view is not None else "unknown",
        "routable": why is None,
        "reason": why,
        "weight": record.weight,
        "load": view.load if view is not None else None,
        "capacity": ad.capacity.model_dump() if ad is not None else None,
        "location": location.model_dump(exclude_none=True),
        "datasets": [d.model_dump(include={"id", "prefix", "size_bytes"}, exclude_none=True) for d in datasets.values()],
        "providers": list(ad.providers) if ad is not None else [],
        "success_rate": round(view.success_rate, 3) if view is not None else None,
        "last_poll_at": view.last_poll_at if view is not None else None,
        "last_poll_ok": view.last_poll_ok if view is not None else None,
        "recent_outcomes": [{"at": at, "outcome": outcome} for at, outcome in view.outcomes] if view is not None else [],
        **_canary_summary(record.canary, view),
    }


def _canary_summary(wanted: bool, view: HealthView | None) -> dict[str, Any]:
    """The last canary as ``canary`` (null before the first), the strip's ``canary_history`` (oldest first),
    and whether canaries run on the member now (on in the registry, with a slot to give them)."""
    canary = view.canary if view is not None else None
    history = [r.model_dump(mode="json") for r in canary.history] if canary is not None else []
    return {
        "canary": history[-1] if history else None,
        "canary_history": history,
        "canaries": "on" if canary is not None and canary.reserved else "off" if not wanted else "waiting",
    }


def _slo(slo: SloTracker | None, key: str) -> list[dict[str, Any]]:
    return [w.model_dump(mode="json") for w in slo.windows(key)] if slo is not None else []


def federation_summary(
    snapshot: RegistrySnapshot, health: Mapping[str, HealthView], *, now: float | None = None,
    slo: SloTracker | None = None,
) -> dict[str, Any]:
    """Members with state, health, load, location, datasets, last poll, recent outcomes, canaries and
    SLO, for anyone to read; and the federation's SLO over every client launch.

    ``now`` (the broker's clock) lets readers turn ``last_poll_at`` into an age without
    trusting their own clock.
    """
    reasons = availability(snapshot, health)
    members = [{**_member_summary(m, snapshot, health.get(m), why), "slo": _slo(slo, m)}
               for m, why in reasons.items() if snapshot.members[m].record.state.value != "retired"]
    return {
        "federation_version": __version__,
        "generated_at": now,
        "routable": sum(1 for m in members if m["routable"]),
        "slo": _slo(slo, OVERALL),
        "members": members,
    }
