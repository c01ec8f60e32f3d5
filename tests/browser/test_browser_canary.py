"""In a real browser: the status page's canary strip fills as canaries run, and turns red on a member
whose servers cannot start (its agent stays up), which the page then shows as not taking launches."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from fedbroker.demo.run import DemoFederation
from fedbroker.demo.sites import SITES
from federation_fixture import BROWSER_BROKER_SETTINGS, save_screenshot, stop_federation

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# server_wrapper: each server start reads the member's fault file; "fail" breaks the server command.
WRAPPER = '#!/bin/sh\n[ "$(cat "$1" 2>/dev/null)" = fail ] && { echo "server command broken" >&2; exit 3; }\nshift\nexec "$@"\n'
SETTINGS = {**BROWSER_BROKER_SETTINGS,
            "canary": {"interval": 2.0, "retry_interval": 1.0, "jitter": 0.1, "eject_after": 2, "timeout": 60.0}}


@pytest.fixture(scope="module")
def federation(browser_available: None) -> Iterator[DemoFederation]:
    """Two demo members with canaries every two seconds (this module's own, instead of the session's)."""
    directory = Path(tempfile.mkdtemp(prefix="fed-browser-canary-"))
    (directory / "wrap.sh").write_text(WRAPPER)
    sites = [dataclasses.replace(s, extra={"server_wrapper": ["/bin/sh", str(directory / "wrap.sh"),
                                                              str(directory / f"{s.member_id}.fault")]})
             for s in SITES[:2]]
    fed = DemoFederation(directory / "fed", port=0, sites=sites, broker_settings=SETTINGS)
    try:
        fed.start(timeout=90)
        yield fed
    finally:
        leftovers = stop_federation(fed)
        shutil.rmtree(directory, ignore_errors=True)
        assert leftovers == [], f"processes left running after stop: {leftovers}"


def test_status_page_shows_the_canary_strip(page: Any, federation: DemoFederation) -> None:
    page.goto(federation.broker_url + "/status")
    # No reload: the page refreshes itself, and each refresh brings the newest canaries.
    # (Selectors, not page functions: the page's CSP forbids evaluating strings.)
    page.wait_for_selector("#member-berlin .canaries li.canary-ok >> nth=1", timeout=60_000)
    strip = page.locator("#member-berlin .canary-strip")
    assert strip.get_attribute("data-canaries") == "on"
    assert " passed; last ok, " in strip.locator(".canary-words").inner_text()
    assert page.locator("#member-berlin .canaries li").first.get_attribute("title").startswith("ok, ")

    fault = federation.directory.parent / "montreal.fault"
    fault.write_text("fail")
    page.wait_for_selector("#member-montreal .canaries li.canary-failed", timeout=30_000)
    # Failures go on every second while the page refreshes every three: the count is whatever it is by then.
    page.wait_for_selector("#member-montreal .verdict:has-text('times in a row')", timeout=30_000)
    assert "Not taking launches: canary failed " in page.locator("#member-montreal .verdict").inner_text()
    montreal = page.locator("#member-montreal")
    assert montreal.get_attribute("data-health") == "ejected"
    assert "answered" in montreal.locator(".last-poll").inner_text()  # its agent answers; its servers do not start
    assert "last failed: jupyter-server exited with status 3" in montreal.locator(".canary-words").inner_text()
    save_screenshot(page, "status-canaries", for_docs=True)
    fault.write_text("")
    page.wait_for_selector("#member-montreal .verdict:has-text('Taking launches')", timeout=30_000)
