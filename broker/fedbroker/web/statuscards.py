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
        *_slo_glance(summary.get("slo") or []),
    ]


def _slo_glance(windows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The federation's SLO over the last hour: share of launches ready, and p50/p95 time-to-ready."""
    hour = next((w for w in windows if w["window"] == "1h"), None)
    if hour is None or not hour["launches"]:
        return [("launches ready, 1 h", "none yet", False)]
    share = hour["ready_share"]
    p50, p95 = hour["p50_time_to_ready"], hour["p95_time_to_ready"]
    times = f"{_num(p50)} / {_num(p95)} s" if p50 is not None and p95 is not None else "-"
    return [("launches ready, 1 h", f"{round(share * 100)}% of {hour['launches']}", share < 0.9),
            ("p50 / p95 to ready, 1 h", times, False)]


def map_point(location: dict[str, Any]) -> tuple[float, float] | None:
    """Equirectangular SVG coordinates (viewBox 0 0 360 180), or None without coordinates."""
    lat, lon = location.get("lat"), location.get("lon")
    if lat is None or lon is None:
        return None
    return round(float(lon) + 180.0, 2), round(90.0 - float(lat), 2)


def load_text(member: dict[str, Any]) -> tuple[int, str]:
    """The load as a whole percentage (of users' slots) and in words."""
    load, cap = member.get("load"), member.get("capacity")
    if load is None or not cap:
        return 0, "unknown (no status yet)"
    if member.get("health") in ("unhealthy", "expired"):
        # Its last ad's slots say nothing now: a dead member must not read as busy (or as free).
        return 0, "unknown (the member is not answering)"
    busy = cap["used"] + cap["building"]
    # The percentage is users' load: a canaried member keeps one slot (and its canary) out of it.
    canary = "; 1 kept for canaries" if member.get("canaries") == "on" else ""
    return round(load * 100), f"{busy} of {cap['total']} slots busy ({round(load * 100)}%){canary}"


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


def _num(x: float) -> str:
    """Seconds as status.js writes them: at most 3 decimals, no trailing zeros."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


def slo_text(windows: list[dict[str, Any]]) -> str:
    """The SLO windows in words: "1 h: 95% ready of 20, p50 3.1 s, p95 9 s · 24 h: ..."."""
    parts = []
    for w in windows:
        label = w["window"].replace("h", " h")
        if not w["launches"]:
            parts.append(f"{label}: no launches")
            continue
        times = "".join(f", {name} {_num(w[key])} s" for name, key in (("p50", "p50_time_to_ready"),
                                                                   ("p95", "p95_time_to_ready")) if w[key] is not None)
        parts.append(f"{label}: {round(w['ready_share'] * 100)}% ready of {w['launches']}{times}")
    return " · ".join(parts) or "not measured"


def canary_words(member: dict[str, Any]) -> str:
    """The canary strip in words, for everyone (the squares are for the eye)."""
    history = member.get("canary_history") or []
    if not history:
        return {"off": "off for this member", "waiting": "none yet (waiting for a live ad with a free slot)"}.get(
            member.get("canaries", ""), "none yet")
    last = history[-1]
    passed = sum(1 for r in history if r["ok"])
    if last["ok"]:
        tail = f"last ok, {_num(last['time_to_ready'])} s to ready" if last.get("time_to_ready") is not None else "last ok"
    else:
        tail = f"last failed: {last.get('reason') or last.get('outcome')}"
    return f"{passed} of {len(history)} passed; {tail}"


def canary_title(result: dict[str, Any]) -> str:
    if result["ok"]:
        return f"ok, {_num(result['time_to_ready'])} s to ready" if result.get("time_to_ready") is not None else "ok"
    return f"failed ({result['outcome']}): {result.get('reason') or ''}"


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
    "canary_words": canary_words,
    "canary_title": canary_title,
    "slo_text": slo_text,
}
