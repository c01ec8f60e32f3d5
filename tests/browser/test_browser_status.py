"""In a real browser: the status page follows member health, and an admin drains and undrains."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from fedbroker.demo.run import DemoFederation
from federation_fixture import save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_status_page_admin_drains_and_undrains(page: Any, federation: DemoFederation) -> None:
    page.goto(federation.broker_url + "/status")
    card = page.locator("#member-montreal")
    assert card.get_attribute("data-state") == "active"
    assert page.locator(".admin-actions").first.is_hidden()
    page.click("#admin summary")
    page.fill("#admin-token", federation.admin_token)
    page.click("#admin-form button[type=submit]")
    assert page.evaluate("sessionStorage.getItem('fedbroker-admin-token')") == federation.admin_token
    page.click("#member-montreal button[data-action=drain]")
    page.wait_for_selector("#member-montreal[data-state=draining]", timeout=15_000)
    assert "montreal is now draining" in page.locator("#admin-status").inner_text()
    page.click("#member-montreal button[data-action=undrain]")
    page.wait_for_selector("#member-montreal[data-state=active]", timeout=15_000)


def _routable(federation: DemoFederation) -> set[str]:
    """The members the broker routes to now, by its own /health."""
    with urllib.request.urlopen(federation.broker_url + "/health", timeout=10) as resp:
        checks = json.loads(resp.read())["checks"]
    return set(next(c for c in checks if c["service"] == "Routable members").get("members", []))


def test_status_page_shows_a_killed_member_going_unhealthy(page: Any, federation: DemoFederation) -> None:
    # The map marks as routable exactly the members the broker routes to. Earlier tests of the
    # session may have left a small member full (the demo's hold 2-4 servers), so which ones those
    # are is read from the broker, not assumed; the page and /health are compared until they agree
    # (a server may be culled between the two reads).
    deadline = time.monotonic() + 30
    while True:
        page.goto(federation.broker_url + "/status")
        shown = {m.get_attribute("data-member") for m in page.locator("#map-markers circle.routable").all()}
        routable = _routable(federation)
        if shown == routable or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    verdicts = page.locator("li.member .verdict").all_inner_texts()  # why a member is not taking launches
    assert shown == routable and routable, (shown, routable, verdicts)
    assert page.locator("li.member").count() == len(federation.members)
    victim = "tokyo" if "tokyo" in routable else sorted(routable)[0]
    assert page.get_attribute(f"#member-{victim}", "data-health") == "healthy"
    federation.kill_member(victim)
    # No reload: the page refreshes itself (it fetches /status again and swaps the cards in).
    page.wait_for_selector(f"#member-{victim}[data-health=unhealthy]", timeout=20_000)
    assert "Not taking launches" in page.locator(f"#member-{victim} .verdict").inner_text()
    assert page.locator(f'#map-markers circle.down[data-member="{victim}"]').count() == 1
    assert "failed" in page.locator(f"#member-{victim} .last-poll").inner_text()
    save_screenshot(page, "status", for_docs=True)
