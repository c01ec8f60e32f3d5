"""The status page's canary strip and SLO words, rendered on the server (status.js draws the same)."""

from __future__ import annotations

from typing import Any

import pytest

from fedbroker.web.htmlpage import PageTemplates
from fedbroker.web.statuscards import TEMPLATE_GLOBALS, canary_words, glance, load_text, slo_text


def member_card_html(member: dict[str, Any], now: float) -> str:
    """One card, rendered by the status page's own macro."""
    pages = PageTemplates()
    pages.env.globals.update(TEMPLATE_GLOBALS)
    return str(pages.env.get_template("statuscards.html").module.member_card(member, now))  # type: ignore[attr-defined]


def canary(ok: bool, ttr: float | None = 1.25, reason: str | None = None) -> dict[str, Any]:
    return {"ok": ok, "at": 1.0, "outcome": "ok" if ok else "launch_failed", "time_to_ready": ttr if ok else None,
            "reason": reason}


def window(name: str, launches: int, ready: int, p50: float | None, p95: float | None) -> dict[str, Any]:
    return {"window": name, "launches": launches, "ready": ready, "ready_share": ready / launches if launches else None,
            "p50_time_to_ready": p50, "p95_time_to_ready": p95}


@pytest.mark.parametrize(("member", "words"), [
    pytest.param({"canaries": "off"}, "off for this member", id="off"),
    pytest.param({"canaries": "waiting"}, "none yet (waiting for a live ad with a free slot)", id="waiting"),
    pytest.param({"canaries": "on", "canary_history": [canary(False, reason="x"), canary(True, 2.5)]},
                 "1 of 2 passed; last ok, 2.5 s to ready", id="recovered"),
    pytest.param({"canaries": "on", "canary_history": [canary(True), canary(False, reason="server exited")]},
                 "1 of 2 passed; last failed: server exited", id="failing"),
])
def test_canary_words(member: dict[str, Any], words: str) -> None:
    assert canary_words(member) == words


@pytest.mark.parametrize(("windows", "text"), [
    pytest.param([], "not measured", id="none"),
    pytest.param([window("1h", 0, 0, None, None), window("24h", 4, 3, 2.0, 9.5)],
                 "1 h: no launches · 24 h: 75% ready of 4, p50 2 s, p95 9.5 s", id="day-only"),
])
def test_slo_text(windows: list[dict[str, Any]], text: str) -> None:
    assert slo_text(windows) == text


def test_card_has_the_strip_oldest_first_and_escapes_reasons() -> None:
    history = [canary(True), canary(False, reason="<script>alert(1)</script>"), canary(True, 0.5)]
    member = {"id": "m1", "display_name": "M", "state": "active", "health": "healthy", "routable": True, "reason": None,
              "location": {}, "datasets": [], "recent_outcomes": [], "canaries": "on", "canary_history": history,
              "slo": [window("1h", 2, 2, 1.0, 2.0)]}
    html = member_card_html(member, now=2.0)
    strip = html[html.index('<ol class="canaries"'):html.index("</ol>", html.index('<ol class="canaries"'))]
    assert strip.count("<li") == 3
    assert [c in strip for c in ("canary-ok", "canary-failed")] == [True, True]
    assert strip.index("canary-failed") < strip.rindex("canary-ok")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "1 h: 100% ready of 2, p50 1 s, p95 2 s" in html


def test_load_words_say_a_slot_is_kept_for_canaries() -> None:
    member = {"load": 0.0, "capacity": {"total": 4, "used": 1, "building": 0}, "canaries": "on"}
    assert load_text(member) == (0, "1 of 4 slots busy (0%); 1 kept for canaries")
    assert load_text({**member, "canaries": "off"})[1] == "1 of 4 slots busy (0%)"


def test_glance_shows_the_federation_slo() -> None:
    summary = {"members": [], "routable": 0, "slo": [window("1h", 10, 8, 3.0, 12.25)]}
    rows = {label: (value, bad) for label, value, bad in glance(summary)}
    assert rows["launches ready, 1 h"] == ("80% of 10", True)
    assert rows["p50 / p95 to ready, 1 h"] == ("3 / 12.25 s", False)
