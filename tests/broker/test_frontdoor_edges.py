"""The front door at its edges, as clients meet it: CORS, refusals that fail over, abandoned launches,
launch links that cannot launch, and ?data= values that are not text."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock

from fedbroker.appkeys import HEALTH, METRICS
from fedbroker.config import BrokerConfig, HealthSettings, RoutingSettings
from brokerkit import broker_app, feed_health, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble

SSE = {"Accept": "text/event-stream"}
PAGE = "http://127.0.0.1:9999"  # a thebe / Jupyter Book page on another origin
Fed = Callable[..., Awaitable[tuple[TestClient, dict[str, MemberDouble]]]]


@pytest.fixture
def fed(aiohttp_server: Any, aiohttp_client: Any) -> Fed:
    """Doubles ``(id, behaviour)`` ranked in the given order, behind a broker."""

    async def start(*members: tuple[str, str], **config: Any) -> tuple[TestClient, dict[str, MemberDouble]]:
        clock, keyring = FakeClock(), new_keyring()
        doubles: dict[str, MemberDouble] = {}
        for rank, (member_id, behaviour) in enumerate(members):
            d = MemberDouble(member_id, keyring.public_set(), clock, behaviour=behaviour)
            d.url = str((await aiohttp_server(d.app())).make_url("/"))
            d.images = ["gh:org/repo"] if rank == 0 else []
            d.capacity = d.capacity.model_copy(update={"used": rank})
            doubles[member_id] = d
        routing = RoutingSettings(max_attempts=3, near_equal=0, event_timeout=5, connect_timeout=1, keepalive=30)
        cfg = BrokerConfig(**{"dev": True, "routing": routing, "health": HealthSettings(eject_after_failures=2), **config})
        app = broker_app(cfg, clock, keyring, snapshot_of(d.entry() for d in doubles.values()))
        feed_health(app, doubles.values())
        return await aiohttp_client(app), doubles

    return start


# -- CORS ---------------------------------------------------------------------------------

async def test_by_default_any_page_may_launch_like_on_mybinder(fed: Fed) -> None:
    client, _ = await fed(("good", "ok"))
    resp = await client.get("/build/gh/org/repo/HEAD", headers={**SSE, "Origin": PAGE})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert parse_stream(await resp.text())[-1]["phase"] == "ready"
    route = await client.get("/api/v1/route?provider=gh&spec=org/repo/HEAD", headers={"Origin": PAGE})
    assert route.headers["Access-Control-Allow-Origin"] == "*"
    pre = await client.options("/build/gh/org/repo/HEAD", headers={
        "Origin": PAGE, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-xsrftoken"})
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Headers"] == "x-xsrftoken" and "GET" in pre.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize(("origin", "allowed"), [(PAGE, True), ("https://evil.example", False)])
async def test_a_restricted_broker_answers_only_the_pages_it_lists(fed: Fed, origin: str, allowed: bool) -> None:
    client, _ = await fed(("good", "ok"), cors_allow_origins=[PAGE])
    resp = await client.get("/build/gh/org/repo/HEAD", headers={**SSE, "Origin": origin})
    await resp.read()
    assert resp.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
    pre = await client.options("/build/gh/org/repo/HEAD", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert pre.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)


async def test_refusals_carry_cors_too_so_the_page_can_show_them(fed: Fed) -> None:
    client, _ = await fed(("good", "ok"))
    resp = await client.get("/build/nope/org/repo/HEAD", headers={**SSE, "Origin": PAGE})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert parse_stream(await resp.text())[0]["status_code"] == 404


async def test_an_empty_list_turns_cross_origin_launches_off(fed: Fed) -> None:
    client, _ = await fed(("good", "ok"), cors_allow_origins=[])
    resp = await client.get("/build/gh/org/repo/HEAD", headers={**SSE, "Origin": PAGE})
    await resp.read()
    assert "Access-Control-Allow-Origin" not in resp.headers


# -- refusals and abandoned launches ---------------------------------------------------------

async def test_a_member_rate_limiting_fails_over_and_is_never_ejected(fed: Fed) -> None:
    """BinderHub's per-IP limit says nothing about the member's health: many refusals, no ejection."""
    client, doubles = await fed(("busy", "failed429"), ("good", "ok"))
    for _ in range(5):
        resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
        events = parse_stream(await resp.text())
        assert events[-1]["phase"] == "ready" and events[-1]["member"] == "good"
        assert any(e.get("member") == "busy" and "could not launch" in e["message"] for e in events)
    view = client.app[HEALTH].views()["busy"]
    assert not view.ejected and view.success_rate == 1.0
    assert len(doubles["busy"].launches) == 5  # still tried first every time
    assert 'fedbroker_launches_total{member="busy",outcome="refused"} 5.0' in client.app[METRICS].render().decode()


async def test_a_provider_a_member_does_not_serve_fails_over_without_blame(fed: Fed) -> None:
    """A BinderHub member without zenodo answers 501: the launch goes on elsewhere, the member stays in."""
    client, doubles = await fed(("picky", "failed501"), ("good", "ok"))
    for _ in range(3):
        events = parse_stream(await (await client.get("/build/gh/org/repo/HEAD", headers=SSE)).text())
        assert events[-1]["phase"] == "ready" and events[-1]["member"] == "good"
    view = client.app[HEALTH].views()["picky"]
    assert not view.ejected and view.success_rate == 1.0 and len(doubles["picky"].launches) == 3


async def test_a_client_gone_before_ready_gets_its_launch_cancelled_at_the_member(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, doubles = await fed(("slow", "hang"))
    resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
    assert (await resp.content.readline()).startswith(b"data:")  # the launch is under way
    resp.close()  # the browser tab is closed
    for _ in range(60):
        if doubles["slow"].deleted:
            break
        await asyncio.sleep(0.1)
    assert doubles["slow"].deleted == [doubles["slow"].launches[0].launch_id]
    assert 'outcome="abandoned"} 1.0' in client.app[METRICS].render().decode()
    assert not client.app[HEALTH].views()["slow"].ejected
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert any("client left" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


# -- launch links that cannot launch ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["relay", "redirect"])
@pytest.mark.parametrize("path", ["/v2", "/v2/", "/v2/gh", "/v2/gh/", "/v2/gh/org"])
async def test_every_bad_v2_url_gets_the_html_page(fed: Fed, mode: str, path: str) -> None:
    client, _ = await fed(("good", "ok"), mode=mode)
    resp = await client.get(path, headers={"Accept": "text/html"}, allow_redirects=False)
    text = await resp.text()
    assert resp.status in (400, 404) and resp.content_type == "text/html", (path, resp.status)
    assert "Cannot launch this" in text and "Traceback" not in text


@pytest.mark.parametrize("value", ["a\x00b", "line\nbreak", "esc\x1b[31m", "tab\there"])
async def test_data_values_must_be_printable(fed: Fed, value: str) -> None:
    client, doubles = await fed(("good", "ok"))
    resp = await client.get("/build/gh/org/repo/HEAD", params={"data": value}, headers=SSE)
    events = parse_stream(await resp.text())
    assert events == [{**events[0], "phase": "failed", "status_code": 400}]
    assert "printable" in events[0]["message"] and "\x00" not in events[0]["message"]
    page = await client.get("/v2/gh/org/repo/HEAD", params={"data": value})
    assert page.status == 400 and "printable" in await page.text()
    assert doubles["good"].launches == []


# -- the status page's words ------------------------------------------------------------------

@pytest.mark.parametrize(("health", "expected"), [
    ("healthy", "3 of 4 slots busy (75%)"),
    ("unhealthy", "unknown (the member is not answering)"),
    ("expired", "unknown (the member is not answering)"),
])
def test_a_dead_member_shows_unknown_load_not_its_last_busy_slots(health: str, expected: str) -> None:
    from fedbroker.web.statuscards import load_text

    member = {"health": health, "load": 0.75, "capacity": {"total": 4, "used": 3, "building": 0}}
    assert load_text(member)[1] == expected


def test_an_unhealthy_member_is_explained_by_its_failing_check() -> None:
    from fedbroker.routing.health import unhealthy_reason
    from fedproto.status import Capacity, HealthCheck, StatusAd

    ad = StatusAd(member_id="m", instance_id="i", generation=1, issued_at=0, expires_at=60, healthy=False,
                  capacity=Capacity(total=1, used=0), backend="binderhub",
                  checks=[HealthCheck(service="BinderHub", ok=False, detail={"error": "BinderHub at https://b did not answer within 3 s"}),
                          HealthCheck(service="Pod quota", ok=True)])
    assert unhealthy_reason(ad) == "BinderHub at https://b did not answer within 3 s"
    assert unhealthy_reason(None) == "member reports itself unhealthy"
