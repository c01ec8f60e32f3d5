"""In a real browser: the status page follows member health, and an admin drains and undrains."""

from __future__ import annotations

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


def test_status_page_shows_a_killed_member_going_unhealthy(page: Any, federation: DemoFederation) -> None:
    page.goto(federation.broker_url + "/status")
    members = page.locator("li.member")
    assert members.count() == len(federation.members)
    assert page.locator("#map-markers circle.routable").count() == len(federation.members)
    victim = "tokyo"
    assert page.get_attribute(f"#member-{victim}", "data-health") == "healthy"
    federation.kill_member(victim)
    # No reload: the page refreshes itself (it fetches /status again and swaps the cards in).
    page.wait_for_selector(f"#member-{victim}[data-health=unhealthy]", timeout=20_000)
    assert "Not taking launches" in page.locator(f"#member-{victim} .verdict").inner_text()
    assert page.locator(f'#map-markers circle.down[data-member="{victim}"]').count() == 1
    assert "failed" in page.locator(f"#member-{victim} .last-poll").inner_text()
    save_screenshot(page, "status", for_docs=True)
