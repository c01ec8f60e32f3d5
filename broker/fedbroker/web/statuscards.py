"""The status page's server-rendered parts: one card per member and the map's markers.

``static/status.js`` redraws the same markup from ``/api/v1/federation`` every few seconds;
this first rendering makes the page whole before any script runs (and without scripts).
Every value from the summary is escaped: display names and dataset ids come from members.
"""

from __future__ import annotations

from typing import Any

from .htmlpage import Markup, esc

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


def glance_html(summary: dict[str, Any]) -> Markup:
    bad_class = ' class="bad"'
    return Markup("".join(f"<div><dt>{esc(label)}</dt><dd{bad_class if bad else ''}>{esc(value)}</dd></div>"
                          for label, value, bad in glance(summary)))


def map_point(location: dict[str, Any]) -> tuple[float, float] | None:
    """Equirectangular SVG coordinates (viewBox 0 0 360 180), or None without coordinates."""
    lat, lon = location.get("lat"), location.get("lon")
    if lat is None or lon is None:
        return None
    return round(float(lon) + 180.0, 2), round(90.0 - float(lat), 2)


def markers_html(summary: dict[str, Any]) -> Markup:
    parts = []
    for m in summary["members"]:
        point = map_point(m["location"])
        if point is None:
            continue
        cls = "marker routable" if m["routable"] else "marker down"
        parts.append(f'<circle class="{cls}" cx="{point[0]}" cy="{point[1]}" r="4" data-member="{esc(m["id"])}">'
                     f'<title>{esc(m["display_name"] or m["id"])}: {esc(m["health"])}, {esc(m["state"])}</title></circle>')
    return Markup("".join(parts))


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


def _outcomes_html(member: dict[str, Any]) -> str:
    outcomes = member.get("recent_outcomes") or []
    if not outcomes:
        return '<span class="muted">none yet</span>'
    labels = [(esc(o["outcome"]), esc(OUTCOME_LABELS.get(o["outcome"], o["outcome"]))) for o in outcomes]
    # The coloured squares are for the eye; the words after them say the same for everyone.
    items = "".join(f'<li class="outcome outcome-{kind}" title="{label}"></li>' for kind, label in labels)
    counts = {k: sum(1 for o in outcomes if o["outcome"] == k) for k in OUTCOME_LABELS}
    words = ", ".join(f"{n} {OUTCOME_LABELS[k]}" for k, n in counts.items() if n)
    return f'<ol class="outcomes" aria-hidden="true">{items}</ol> <span class="outcome-words">{esc(words)}</span>'


def _datasets_html(member: dict[str, Any]) -> str:
    sets = member.get("datasets") or []
    if not sets:
        return '<span class="muted">none</span>'
    return '<ul class="datasets-list">' + "".join(
        f'<li><code>{esc(d["id"])}</code>{" (prefix)" if d.get("prefix") else ""}</li>' for d in sets) + "</ul>"


def _load_html(member: dict[str, Any]) -> str:
    percent, words = load_text(member)
    return (f'<progress class="meter {load_class(percent)}" max="100" value="{percent}" '
            f'aria-label="Load of {esc(member["id"])}">{percent}%</progress> '
            f'<span class="load-words">{esc(words)}</span>')


def member_card_html(member: dict[str, Any], now: float | None) -> str:
    """One member's card; ``static/status.js`` draws the same markup on refresh."""
    mid, state, health = esc(member["id"]), esc(member["state"]), esc(member["health"])
    verdict = "Taking launches" if member["routable"] else f"Not taking launches: {member.get('reason') or 'unknown'}"
    return f"""<li class="member card" id="member-{mid}" data-member="{mid}" data-health="{health}" data-state="{state}">
  <div class="member-head">
    <h2>{esc(member['display_name'] or member['id'])} <span class="member-id">{mid}</span></h2>
    <span class="pill state-{state}">{state}</span>
    <span class="pill health-{health}">{health}</span>
  </div>
  <p class="verdict {'ok' if member['routable'] else 'bad'}">{esc(verdict)}</p>
  <dl class="facts-list">
    <dt>Load</dt><dd>{_load_html(member)}</dd>
    <dt>Location</dt><dd>{esc(location_text(member['location']))}</dd>
    <dt>Datasets</dt><dd>{_datasets_html(member)}</dd>
    <dt>Last poll</dt><dd class="last-poll">{esc(poll_text(member, now))}</dd>
    <dt>Recent launches</dt><dd>{_outcomes_html(member)}</dd>
  </dl>
  <p class="admin-actions" hidden>
    <button type="button" class="button secondary" data-action="drain" data-member="{mid}">Drain {mid}</button>
    <button type="button" class="button secondary" data-action="undrain" data-member="{mid}">Undrain {mid}</button>
  </p>
</li>"""


def member_cards_html(summary: dict[str, Any]) -> Markup:
    if not summary["members"]:
        return Markup('<li class="card empty">No member has joined this federation yet.</li>')
    now = summary.get("generated_at")
    return Markup("\n".join(member_card_html(m, now) for m in summary["members"]))
