"""Every header of redirect mode's 307, byte for byte: what browsers and clients rely on.

The redirect path is the broker's hottest and is tuned for CPU; these tests hold what it
answers (the sticky cookie's attributes, CORS on the 307, the decision, rate-limit and protocol
headers), so no speed-up changes it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock
from fedproto.version import PROTOCOL, PROTOCOL_HEADER

from fedbroker.config import BrokerConfig, RateLimitSettings, RoutingSettings
from brokerkit import broker_app, feed_health, new_keyring, snapshot_of
from member_double import MemberDouble


async def make(aiohttp_server: Any, aiohttp_client: Any, kind: str = "binderhub", **config: Any) -> TestClient:
    clock, keyring = FakeClock(), new_keyring()
    member = MemberDouble("m0", keyring.public_set(), clock, redirect=kind)
    member.url = str((await aiohttp_server(member.app())).make_url("/")).rstrip("/")
    settings = {"dev": True, "mode": "redirect", "routing": RoutingSettings(near_equal=0), **config}
    app = broker_app(BrokerConfig(**settings), clock, keyring, snapshot_of([member.entry()]))
    feed_health(app, [member])
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    ("public_url", "routing", "cookie"),
    [
        pytest.param("http://127.0.0.1:8585", {}, "federation_member=m0; HttpOnly; Max-Age=3600; Path=/; SameSite=Lax",
                     id="http"),
        pytest.param("https://binder.example.org", {"cookie_name": "fm", "cookie_max_age": 60},
                     "fm=m0; HttpOnly; Max-Age=60; Path=/; SameSite=Lax; Secure", id="https-secure"),
    ],
)
@pytest.mark.parametrize("path", ["/build/gh/org/repo/HEAD", "/v2/gh/org/repo/HEAD?urlpath=lab"])
async def test_the_sticky_cookie_keeps_its_attributes(aiohttp_server: Any, aiohttp_client: Any, public_url: str,
                                                      routing: dict[str, Any], cookie: str, path: str) -> None:
    client = await make(aiohttp_server, aiohttp_client, public_url=public_url,
                        routing=RoutingSettings(near_equal=0, **routing))
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 307
    assert resp.headers.getall("Set-Cookie") == [cookie]


async def test_a_307_carries_cors_the_decision_and_the_protocol(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client)
    resp = await client.get("/build/gh/org/repo/HEAD?build_only=true", allow_redirects=False,
                            headers={"Origin": "https://page.example"})
    assert resp.status == 307
    assert resp.headers["Location"] == "https://m0.example/build/gh/org/repo/HEAD?build_only=true"
    assert resp.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in resp.headers
    assert resp.headers[PROTOCOL_HEADER] == str(PROTOCOL)
    assert len(resp.headers["X-Federation-Decision"]) == 12
    assert "x-ratelimit-limit" not in resp.headers  # rate limiting is off by default
    assert await resp.read() == b""


@pytest.mark.parametrize(("origin", "expected"), [("https://allowed.example", "https://allowed.example"),
                                                  ("https://other.example", None), (None, None)],
                         ids=["listed", "unlisted", "no-origin"])
async def test_a_307_answers_a_listed_origin_only(aiohttp_server: Any, aiohttp_client: Any, origin: str | None,
                                                  expected: str | None) -> None:
    client = await make(aiohttp_server, aiohttp_client, cors_allow_origins=["https://allowed.example"])
    resp = await client.get("/build/gh/org/repo/HEAD", allow_redirects=False, headers={"Origin": origin} if origin else {})
    assert resp.status == 307
    assert resp.headers.get("Access-Control-Allow-Origin") == expected
    assert resp.headers.get("Vary") == ("Origin" if expected else None)


async def test_a_307_carries_the_rate_limit_and_the_refusal_its_retry(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, kind="ticket",
                        rate_limit=RateLimitSettings(launches=2, period=600))
    first = await client.get("/build/gh/org/repo/HEAD?ticket=forged", allow_redirects=False)
    # The client's own ticket is dropped; the broker's is the one query value.
    (query,) = parse_qs(urlsplit(first.headers["Location"]).query)["ticket"]
    assert first.status == 307 and first.headers["Location"].split("?")[1] == f"ticket={query}" and query.count(".") == 2
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("2", "1")
    reset = int(first.headers["x-ratelimit-reset"])
    await client.get("/build/gh/org/repo/HEAD", allow_redirects=False)
    refused = await client.get("/v2/gh/org/repo/HEAD", allow_redirects=False)
    assert refused.status == 429 and "Set-Cookie" not in refused.headers
    assert (refused.headers["x-ratelimit-remaining"], int(refused.headers["x-ratelimit-reset"])) == ("0", reset)
    assert "Rate limit exceeded. Try again in 600 seconds." in await refused.text()


async def test_when_no_member_takes_browsers_the_refusal_says_when_to_retry(aiohttp_server: Any,
                                                                           aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, kind="none")
    resp = await client.get("/build/gh/org/repo/HEAD", allow_redirects=False, headers={"Origin": "https://p.example"})
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    assert resp.headers["Retry-After"] == "30" and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["X-Federation-Decision"] and "Set-Cookie" not in resp.headers
    page = await client.get("/v2/gh/org/repo/HEAD", allow_redirects=False)
    assert page.status == 503 and page.headers["Retry-After"] == "30"
