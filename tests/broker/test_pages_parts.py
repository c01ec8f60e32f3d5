"""The pages' building blocks: escaping, JSON in script elements, and the status cards' wording."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from markupsafe import Markup

from fedbroker.web.htmlpage import PageTemplates
from fedbroker.web.statuscards import TEMPLATE_GLOBALS, glance, load_text, location_text, map_point, poll_text


def test_render_escapes_values_unless_markup(tmp_path: Path) -> None:
    (tmp_path / "layout.html").write_text(
        '<title>{{ title }}</title><a{% if nav == "home" %} aria-current="page"{% endif %}></a>'
        "<main>{% block body %}{% endblock %}</main>{{ version }}")
    (tmp_path / "page.html").write_text(
        '{% extends "layout.html" %}{% block body %}<p>{{ plain }}</p>{{ fragment }}{% endblock %}')
    pages = PageTemplates(tmp_path)
    html = pages.render("page", title="<T>", plain="<b>&'\"", fragment=Markup("<i>ok</i>"), nav="home")
    assert "<title>&lt;T&gt;</title>" in html
    assert "<p>&lt;b&gt;&amp;&#39;&#34;</p><i>ok</i>" in html
    assert ' aria-current="page"' in html


def test_an_undefined_template_value_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    (tmp_path / "layout.html").write_text("{{ missing }}")
    with pytest.raises(Exception, match="'missing' is undefined"):
        PageTemplates(tmp_path).render("layout", title="t")


def test_json_in_a_script_element_cannot_close_it(tmp_path: Path) -> None:
    (tmp_path / "layout.html").write_text('<script type="application/json">{{ value|tojson }}</script>')
    value = {"a": "</script><script>alert(1)</script>", "b": "&<>'"}
    html = PageTemplates(tmp_path).render("layout", title="t", value=value)
    text = html.removeprefix('<script type="application/json">').removesuffix("</script>")
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def member_card_html(member: dict[str, Any], now: float) -> str:
    """One card, rendered by the status page's own macro."""
    pages = PageTemplates()
    pages.env.globals.update(TEMPLATE_GLOBALS)
    return str(pages.env.get_template("statuscards.html").module.member_card(member, now))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("location", "point"), [
    ({"lat": 0.0, "lon": 0.0}, (180.0, 90.0)),
    ({"lat": 90.0, "lon": -180.0}, (0.0, 0.0)),
    ({"lat": -33.87, "lon": 151.21}, (331.21, 123.87)),
    ({"region": "eu"}, None),
], ids=["null-island", "top-left", "sydney", "no-coordinates"])
def test_map_point_is_equirectangular(location: dict[str, Any], point: tuple[float, float] | None) -> None:
    assert map_point(location) == point


MEMBER: dict[str, Any] = {
    "id": "a", "display_name": "A", "state": "active", "health": "healthy", "routable": True, "reason": None,
    "load": 0.5, "capacity": {"total": 4, "used": 1, "building": 1}, "location": {"lat": 1.0, "lon": 2.0, "region": "r"},
    "datasets": [], "last_poll_at": 90.0, "last_poll_ok": True,
    "recent_outcomes": [{"at": 1.0, "outcome": "ready"}, {"at": 2.0, "outcome": "failed"}],
}


@pytest.mark.parametrize(("changes", "load", "poll"), [
    ({}, (50, "2 of 4 slots busy (50%)"), "10 s ago, answered"),
    ({"load": None, "capacity": None, "last_poll_at": None}, (0, "unknown (no status yet)"), "never polled yet"),
    ({"last_poll_ok": False}, (50, "2 of 4 slots busy (50%)"), "10 s ago, failed"),
], ids=["polled", "never-polled", "failing"])
def test_card_wording(changes: dict[str, Any], load: tuple[int, str], poll: str) -> None:
    member = {**MEMBER, **changes}
    assert load_text(member) == load
    assert poll_text(member, 100.0) == poll
    card = member_card_html(member, 100.0)
    assert "1 ready, 1 failed (member)" in card and 'id="member-a"' in card


def test_location_and_glance() -> None:
    assert location_text(MEMBER["location"]) == "r, 1.0°, 2.0°"
    assert location_text({}) == "not given"
    down = {**MEMBER, "id": "b", "health": "unhealthy", "routable": False, "capacity": None, "recent_outcomes": []}
    numbers = {label: (value, bad) for label, value, bad in glance({"members": [MEMBER, down], "routable": 1})}
    assert numbers["members"] == ("2", False) and numbers["not healthy"] == ("1", True)
    assert numbers["slots busy"] == ("2/4", False) and numbers["recent launches failed"] == ("1", False)
