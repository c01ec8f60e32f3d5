"""The BinderHub-compatible front door, the dry run, /health, /metrics and redirect mode."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock
from fedproto.datasets import Dataset

from fedbroker.appkeys import HEALTH
from fedbroker.config import BrokerConfig, RateLimitSettings, SpecFilter
from brokerkit import broker_app, feed_health, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble

SSE = {"Accept": "text/event-stream"}


async def make(aiohttp_server: Any, aiohttp_client: Any, *, healthy: bool = True, **config: Any) -> TestClient:
    clock, keyring = FakeClock(), new_keyring()
    doubles = []
    for member_id in ("alpha", "beta"):
        d = MemberDouble(member_id, keyring.public_set(), clock, healthy=healthy)
        d.url = str((await aiohttp_server(d.app())).make_url("/"))
        doubles.append(d)
    doubles[1].datasets = [Dataset(id="10.5281/zenodo.42", size_bytes=2**30)]
    app = broker_app(BrokerConfig(**{"dev": True, **config}), clock, keyring, snapshot_of(d.entry() for d in doubles))
    feed_health(app, doubles)
    return await aiohttp_client(app)


@pytest.fixture
async def client(aiohttp_server: Any, aiohttp_client: Any) -> TestClient:
    return await make(aiohttp_server, aiohttp_client, cors_allow_origins=["https://allowed.example"])


REFUSALS = [
    pytest.param("/build/gh/org/repo/HEAD", {}, 400, "Missing Accept header", id="no-accept-header"),
    pytest.param("/build/nosuch/org/repo/HEAD", SSE, 404, "No provider found", id="unknown-provider"),
    pytest.param("/build/gh/-bad/repo/HEAD", SSE, 400, "invalid GitHub repository", id="bad-spec"),
    pytest.param("/build/gh/org/repo/-x", SSE, 400, "invalid ref", id="bad-ref"),
]


@pytest.mark.parametrize(("path", "headers", "code", "text"), REFUSALS)
async def test_refusals_are_failed_events(client: TestClient, path: str, headers: dict, code: int, text: str) -> None:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    (event,) = parse_stream(await resp.text())
    assert event["phase"] == "failed" and event["status_code"] == code and text in event["message"]


async def test_file_urls_need_dev_mode(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, dev=False)
    resp = await client.get("/build/git/file%3A%2F%2F%2Fsrv%2Frepo.git/HEAD", headers=SSE)
    (event,) = parse_stream(await resp.text())
    assert event["status_code"] == 400 and "development mode" in event["message"]


async def test_plain_http_members_refused_without_dev_mode(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, dev=False)
    events = parse_stream(await (await client.get("/build/gh/org/repo/HEAD", headers=SSE)).text())
    assert events[-1]["phase"] == "failed" and "agent URL must be https" in events[-1]["message"]


async def test_deny_list(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, specs=SpecFilter(deny=[r"gh/evil/.*"]))
    (event,) = parse_stream(await (await client.get("/build/gh/evil/repo/HEAD", headers=SSE)).text())
    assert event["status_code"] == 403 and "disabled" in event["message"]
    resp = await client.get("/api/v1/route", params={"provider": "gh", "spec": "evil/repo/HEAD"})
    assert resp.status == 403 and (await resp.json())["error"] == "denied"


async def test_rate_limit_headers_and_429(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, rate_limit=RateLimitSettings(launches=2, period=3600))
    seen = []
    for _ in range(3):
        resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
        seen.append((resp.headers.get("x-ratelimit-limit"), resp.headers.get("x-ratelimit-remaining"),
                     parse_stream(await resp.text())[-1]))
    assert [(lim, rem) for lim, rem, _ in seen] == [("2", "1"), ("2", "0"), ("2", "0")]
    assert seen[0][2]["phase"] == "ready"
    last = seen[2][2]
    assert last["phase"] == "failed" and last["status_code"] == 429
    assert last["message"] == "Rate limit exceeded. Try again in 3600 seconds.\n"


async def test_nothing_routable_fails_at_once_and_health_is_503(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, healthy=False)
    resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
    (event,) = parse_stream(await resp.text())
    assert event["status_code"] == 503 and "No member can take this launch" in event["message"]
    assert resp.headers["X-Federation-Decision"]
    health = await client.get("/health")
    assert health.status == 503 and health.headers["Retry-After"]
    body = await health.json()
    assert body["ok"] is False and body["checks"][0]["service"] == "Routable members"
    head = await client.head("/health")
    assert head.status == 503


async def test_health_ok_and_system_routes(client: TestClient) -> None:
    body = await (await client.get("/health")).json()
    assert body["ok"] is True and body["checks"][0]["count"] == 2
    versions = await (await client.get("/versions")).json()
    assert "binderhub" in versions and versions["federation"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert jwks["keys"][0]["kty"] == "OKP"
    summary = await (await client.get("/api/v1/federation")).json()
    assert [m["id"] for m in summary["members"]] == ["alpha", "beta"]
    assert "agent_url" not in str(summary) and "jwks" not in str(summary)


async def test_data_locality_over_the_front_door(client: TestClient) -> None:
    resp = await client.get("/build/gh/org/repo/HEAD", params={"data": "doi:10.5281/ZENODO.42"}, headers=SSE)
    assert parse_stream(await resp.text())[-1]["member"] == "beta"


async def test_dry_run_explains(client: TestClient) -> None:
    resp = await client.get("/api/v1/route", params={"provider": "zenodo", "spec": "10.5281/zenodo.42"})
    body = await resp.json()
    assert body["candidates"][0]["member_id"] == "beta"
    assert body["candidates"][1]["parts"]["data"] == 60.0 and "mostly data" in body["candidates"][1]["reason"]
    bad = await client.get("/api/v1/route", params={"provider": "nosuch", "spec": "x"})
    assert bad.status == 404 and (await bad.json())["error"] == "unknown_provider"
    missing = await client.get("/api/v1/route")
    assert missing.status == 400


@pytest.mark.parametrize("data", ["\x00\xff", "a\nb", " ", "x" * 513], ids=["nul", "newline", "blank", "too-long"])
async def test_dry_run_refuses_the_data_a_launch_refuses(client: TestClient, data: str) -> None:
    # A hostile ?data= is refused by the dry run as by /build (one rule), not echoed into a decision.
    resp = await client.get("/api/v1/route", params={"provider": "gh", "spec": "org/repo/HEAD", "data": data})
    assert resp.status == 400 and (await resp.json())["error"] == "bad_data"
    launch = await client.get("/build/gh/org/repo/HEAD", params={"data": data}, headers=SSE)
    assert parse_stream(await launch.text())[-1]["status_code"] == 400


@pytest.mark.parametrize(("origin", "allowed"), [("https://allowed.example", True), ("https://evil.example", False)],
                         ids=["allowed-origin", "other-origin"])
async def test_cors(client: TestClient, origin: str, allowed: bool) -> None:
    resp = await client.get("/build/gh/org/repo/HEAD", headers={**SSE, "Origin": origin})
    await resp.text()
    assert (resp.headers.get("Access-Control-Allow-Origin") == origin) is allowed
    pre = await client.options("/build/gh/org/repo/HEAD", headers={"Origin": origin,
                                                                    "Access-Control-Request-Method": "GET"})
    assert pre.status == 204
    assert ("Access-Control-Allow-Origin" in pre.headers) is allowed


async def test_metrics_never_name_repos(client: TestClient) -> None:
    await (await client.get("/build/gh/secret-org/secret-repo/HEAD", headers=SSE)).text()
    text = await (await client.get("/metrics")).text()
    assert "secret" not in text
    assert 'fedbroker_launches_total{member="none",outcome="rate_limited"} 0.0' in text
    assert 'fedbroker_member_health{member="alpha",state="healthy"} 1.0' in text
    assert "fedbroker_routing_decision_seconds_count 1.0" in text


async def test_launch_page_placeholder(client: TestClient) -> None:
    resp = await client.get("/v2/gh/org/repo/HEAD", params={"urlpath": "lab", "data": "10.1/x"})
    html = await resp.text()
    assert resp.status == 200 and "/static/launch.js" in html
    assert '"/build/gh/org/repo/HEAD?data=10.1%2Fx"' in html and '"lab"' in html


async def test_redirect_mode_307_with_sticky_cookie(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, mode="redirect")
    resp = await client.get("/v2/gh/org/repo/HEAD?urlpath=lab", allow_redirects=False)
    assert resp.status == 307
    member = resp.cookies["federation_member"].value
    assert resp.headers["Location"] == f"https://{member}.example/v2/gh/org/repo/HEAD?urlpath=lab"
    # The cookie is honoured, even for a repo that would hash elsewhere, while that member is routable.
    other = "beta" if member == "alpha" else "alpha"
    client.session.cookie_jar.clear()
    for i in range(10):
        r = await client.get(f"/build/gh/org/r{i}/HEAD", allow_redirects=False, cookies={"federation_member": other})
        assert r.headers["Location"].startswith(f"https://{other}.example/build/gh/org/r{i}/HEAD")
    # Each 307 counts as provisional load until the member's next ad: its 10 slots are now taken,
    # so the next launch goes to the other member, cookie or not.
    r = await client.get("/build/gh/org/r10/HEAD", allow_redirects=False, cookies={"federation_member": other})
    assert r.headers["Location"].startswith(f"https://{member}.example/")
    client.app[HEALTH].member(other).record_poll(client.app[HEALTH].member(other).ad)  # its next ad: room again
    client.app[HEALTH].member(other).record_poll(None, "down")
    client.app[HEALTH].member(other).record_poll(None, "down")
    r = await client.get("/build/gh/org/r1/HEAD", allow_redirects=False, cookies={"federation_member": other})
    assert r.headers["Location"].startswith(f"https://{member}.example/")


async def test_a_relayed_launch_counts_once_as_provisional_load(client: TestClient) -> None:
    """The decision counts its launch against the chosen member at once; the relay's attempt at that
    member does not count it again (each slot would otherwise look taken twice until the next ad)."""
    resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
    events = parse_stream(await resp.text())
    assert events[-1]["phase"] == "ready"
    member = events[-1]["member"]
    assert client.app[HEALTH].member(member).recent_launches == 1
    other = "beta" if member == "alpha" else "alpha"
    assert client.app[HEALTH].member(other).recent_launches == 0
