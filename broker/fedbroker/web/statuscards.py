"""The status page's wording: the numbers and phrases ``templates/statuscards.html`` renders.

The cards are rendered once, by that template; ``static/status.js`` refreshes the page by
fetching ``/status`` again and swapping the rendered parts in, so nothing is drawn twice.
These functions are the template's globals (:data:`TEMPLATE_GLOBALS`). Every value from the
summary is escaped by the template: display names and dataset ids come from members.
"""

from __future__ import annotations

from typing import Any, Callable

STATUS_REFRESH_SECONDS = 3.0
OUTCOME_LABELS = {"ready": "ready", "failed": "failed (member)", "repo_error": "failed (repository)"}


def summary_line(summary: dict[str, Any]) -> str:
    members = len(summary["members"])
    return f"{members} member{'s' if members != 1 else ''}, {summary['routable']} taking launches"


def glance(summary: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The overview numbers: (label, value, whether it is bad news)."""
    members = summary["members"]
    down = sum(1 for m in members if m["health"] != "healthy")
    caps = [m["capacity"] for m in members if m.get("capacity")]
    busy, total = sum(c["used"] + c["building"] for c in caps), sum(c["total"] for c in caps)
    outcomes = [o["outcome"] for m in members for o in m.get("recent_outcomes") or []]
    return [
        ("members", str(len(members)), False),
        ("taking launches", str(summary["routable"]), summary["routable"] == 0),
        ("not healthy", str(down), down > 0),
        ("slots busy", f"{busy}/{total}", False),
        ("recent launches ready", str(outcomes.count("ready")), False),
        ("recent launches failed", str(len(outcomes) - outcomes.count("ready")), False),
    ]


def map_point(location: dict[str, Any]) -> tuple[float, float] | None:
    """Equirectangular SVG coordinates (viewBox 0 0 360 180), or None without coordinates."""
    lat, lon = location.get("lat"), location.get("lon")
    if lat is None or lon is None:
        return None
    return round(float(lon) + 180.0, 2), round(90.0 - float(lat), 2)


def load_text(member: dict[str, Any]) -> tuple[int, str]:
    """The load as a whole percentage and in words."""
    load, cap = member.get("load"), member.get("capacity")
    if load is None or not cap:
        return 0, "unknown (no status yet)"
    busy = cap["used"] + cap["building"]
    return round(load * 100), f"{busy} of {cap['total']} slots busy ({round(load * 100)}%)"


def load_class(percent: int) -> str:
    return "high" if percent >= 85 else "mid" if percent >= 60 else "low"


def location_text(location: dict[str, Any]) -> str:
    where = " · ".join(str(location[k]) for k in ("region", "country") if location.get(k))
    point = map_point(location)
    coords = f"{location['lat']:.1f}°, {location['lon']:.1f}°" if point else ""
    return ", ".join(x for x in (where, coords) if x) or "not given"


def poll_text(member: dict[str, Any], now: float | None) -> str:
    at = member.get("last_poll_at")
    if at is None:
        return "never polled yet"
    age = f"{max(0, round(now - at))} s ago" if now is not None else "recently"
    return f"{age}, {'answered' if member.get('last_poll_ok') else 'failed'}"


def outcome_label(outcome: str) -> str:
    return OUTCOME_LABELS.get(outcome, outcome)


def outcome_words(outcomes: list[dict[str, Any]]) -> str:
    """Recent outcomes counted in words, e.g. ``2 ready, 1 failed (member)``."""
    counts = {k: sum(1 for o in outcomes if o["outcome"] == k) for k in OUTCOME_LABELS}
    return ", ".join(f"{n} {OUTCOME_LABELS[k]}" for k, n in counts.items() if n)


TEMPLATE_GLOBALS: dict[str, Callable[..., Any]] = {
    "summary_line": summary_line,
    "glance": glance,
    "map_point": map_point,
    "load_text": load_text,
    "load_class": load_class,
    "location_text": location_text,
    "poll_text": poll_text,
    "outcome_label": outcome_label,
    "outcome_words": outcome_words,
}
