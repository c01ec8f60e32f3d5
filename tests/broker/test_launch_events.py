"""What a member's events may carry on to clients: known fields, a ready URL on its own host, bounded size."""

from __future__ import annotations

import pytest

from fedbroker.launch.events import EventBudget, EventRejected, ready_url, relayable
from fedproto.launch import LaunchEvent

PUBLIC = "https://hub.site-a.example.org/prefix"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("/user/x?token=t", "https://hub.site-a.example.org/user/x/?token=t"),
        ("user/x", "https://hub.site-a.example.org/prefix/user/x/"),
        ("https://hub.site-a.example.org/user/x/", "https://hub.site-a.example.org/user/x/"),
        ("https://HUB.site-a.example.org:443/user/x/", "https://HUB.site-a.example.org:443/user/x/"),
        ("https://evil.example/user/x/", None),
        ("//evil.example/user/x/", None),
        ("http://hub.site-a.example.org/user/x/", None),  # another origin: plain http
        # Another port of the same host: a single-machine site serves each server on its own port.
        ("https://hub.site-a.example.org:8443/user/x/", "https://hub.site-a.example.org:8443/user/x/"),
        ("https://hub.site-a.example.org.evil.example/", None),
        ("https://hub.site-a.example.org@evil.example/", None),
        ("javascript:alert(document.cookie)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("  javascript:alert(1)", None),
        ("", None),
    ],
)
def test_ready_url_must_be_on_the_members_public_host(url: str, expected: str | None) -> None:
    event = LaunchEvent(phase="ready", url=url, token="t")
    if expected is None:
        with pytest.raises(EventRejected):
            ready_url(event, PUBLIC)
    else:
        assert ready_url(event, PUBLIC) == expected


def test_relayable_keeps_binderhub_fields_and_sets_the_member() -> None:
    event = LaunchEvent.model_validate({
        "phase": "building", "message": "Step 1\n", "imageName": "r/img:1", "member": "someone-else",
        "decision": "forged", "evil": "<script>", "nested": {"a": 1}, "repo_url": "javascript:alert(1)",
        "binder_ref_url": "https://github.com/o/r/tree/abc",
    })
    out = relayable(event, "site-a").to_json()
    assert out == {"phase": "building", "message": "Step 1\n", "imageName": "r/img:1", "member": "site-a",
                   "binder_ref_url": "https://github.com/o/r/tree/abc"}


def test_event_budget_per_event_and_in_total() -> None:
    budget = EventBudget(per_event=100, total=250)
    budget.line(60, data=True)
    budget.line(1, data=False)
    budget.event_done()
    budget.line(90, data=True)
    with pytest.raises(EventRejected, match="an event exceeded 100 bytes"):
        budget.line(20, data=True)  # 110 in one event, spread over two lines
    budget = EventBudget(per_event=100, total=250)
    for _ in range(25):
        budget.line(10, data=False)  # keepalives count too
    with pytest.raises(EventRejected, match="exceeded 250 bytes"):
        budget.line(1, data=False)


def test_plain_http_public_url_allows_https_servers_but_https_never_downgrades() -> None:
    assert ready_url(LaunchEvent(phase="ready", url="https://127.0.0.1:9999/x/"), "http://127.0.0.1:8586")
    with pytest.raises(EventRejected):
        ready_url(LaunchEvent(phase="ready", url="http://hub.site-a.example.org/x/"), PUBLIC)
