"""Redirect mode sends every browser somewhere it can launch: a BinderHub's own /build, or an agent with a ticket."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock
from fedproto.replay import ReplayCache
from fedproto.tickets import verify_ticket

from fedbroker.appkeys import KEYRING
from fedbroker.config import BrokerConfig, RoutingSettings
from brokerkit import broker_app, feed_health, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble

SSE = {"Accept": "text/event-stream"}


async def make(aiohttp_server: Any, aiohttp_client: Any, *redirects: str | None) -> tuple[TestClient, list[MemberDouble]]:
    """Members m0, m1, ... ranked in order, each offering the given redirect kind."""
    clock, keyring = FakeClock(), new_keyring()
    doubles = []
    for rank, kind in enumerate(redirects):
        d = MemberDouble(f"m{rank}", keyring.public_set(), clock, redirect=kind)
        d.url = str((await aiohttp_server(d.app())).make_url("/")).rstrip("/")
        d.images = ["gh:org/repo"] if rank == 0 else []
        d.capacity = d.capacity.model_copy(update={"used": rank})
        doubles.append(d)
    config = BrokerConfig(dev=True, mode="redirect", routing=RoutingSettings(near_equal=0))
    app = broker_app(config, clock, keyring, snapshot_of(d.entry() for d in doubles))
    feed_health(app, doubles)
    return await aiohttp_client(app), doubles


def _check_ticket(client: TestClient, location: str, member: MemberDouble, spec: str = "org/repo/HEAD") -> dict:
    url = urlsplit(location)
    query = parse_qs(url.query)
    return verify_ticket(
        query["ticket"][0], keys=client.app[KEYRING].public_set(), issuer="broker", audience=member.member_id,
        provider="gh", spec=spec, data=query.get("data", []), clock=member.clock, replay=ReplayCache(),
    )


async def test_an_agent_backed_member_gets_the_browser_with_a_ticket_for_exactly_this_launch(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client, (m0,) = await make(aiohttp_server, aiohttp_client, "ticket")
    resp = await client.get("/build/gh/org/repo/HEAD?data=10.5281%2Fzenodo.1", allow_redirects=False,
                            headers={"Origin": "http://127.0.0.1:9999", "X-Forwarded-For": "192.0.2.1"})
    assert resp.status == 307 and resp.headers["Access-Control-Allow-Origin"] == "*"
    location = resp.headers["Location"]
    assert location.startswith(f"{m0.url}/build/gh/org/repo/HEAD?data=10.5281%2Fzenodo.1&ticket=")
    claims = _check_ticket(client, location, m0)
    assert claims["data"] == ["10.5281/zenodo.1"] and claims["origin"] == "http://127.0.0.1:9999"
    assert claims["decision"] == resp.headers["X-Federation-Decision"]
    assert claims["exp"] - claims["iat"] <= 60
    assert resp.cookies["federation_member"].value == "m0"
    # Each redirect carries a fresh ticket: one launch each.
    again = await client.get("/build/gh/org/repo/HEAD?data=10.5281%2Fzenodo.1", allow_redirects=False)
    assert _check_ticket(client, again.headers["Location"], m0)["jti"] != claims["jti"]


async def test_a_binderhub_member_gets_the_browser_at_its_own_build_url(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client, _ = await make(aiohttp_server, aiohttp_client, "binderhub")
    resp = await client.get("/build/gh/org/repo/HEAD?build_only=true", allow_redirects=False)
    assert resp.status == 307 and resp.headers["Location"] == "https://m0.example/build/gh/org/repo/HEAD?build_only=true"
    assert "ticket" not in resp.headers["Location"]


async def test_a_member_browsers_cannot_reach_is_never_a_redirect_target(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client, (_, m1) = await make(aiohttp_server, aiohttp_client, None, "ticket")
    for i in range(5):
        resp = await client.get(f"/build/gh/org/repo{i}/HEAD", allow_redirects=False)
        assert resp.status == 307 and resp.headers["Location"].startswith(m1.url + "/build/")
    # Not even through a sticky cookie naming it.
    resp = await client.get("/build/gh/org/repo/HEAD", allow_redirects=False, cookies={"federation_member": "m0"})
    assert resp.headers["Location"].startswith(m1.url + "/build/")


async def test_a_sticky_cookie_never_sends_a_repo_to_a_member_that_does_not_serve_it(aiohttp_server: Any, aiohttp_client: Any) -> None:
    clock, keyring = FakeClock(), new_keyring()
    doubles = []
    for name, serves in (("hub", ["gh:lab/*"]), ("any", None)):
        d = MemberDouble(name, keyring.public_set(), clock, redirect="ticket", serves=serves)
        d.url = str((await aiohttp_server(d.app())).make_url("/")).rstrip("/")
        doubles.append(d)
    app = broker_app(BrokerConfig(dev=True, mode="redirect"), clock, keyring, snapshot_of(d.entry() for d in doubles))
    feed_health(app, doubles)
    client = await aiohttp_client(app)
    hub, anywhere = doubles
    resp = await client.get("/build/gh/org/repo/HEAD", allow_redirects=False, cookies={"federation_member": "hub"})
    assert resp.status == 307 and resp.headers["Location"].startswith(anywhere.url + "/build/")
    # For a repo it serves, the cookie keeps the browser there.
    resp = await client.get("/build/gh/lab/paper/HEAD", allow_redirects=False, cookies={"federation_member": "hub"})
    assert resp.status == 307 and resp.headers["Location"].startswith(hub.url + "/build/")


async def test_when_no_member_takes_browsers_the_client_is_told_at_once(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client, _ = await make(aiohttp_server, aiohttp_client, None)
    resp = await client.get("/build/gh/org/repo/HEAD", headers=SSE, allow_redirects=False)
    events = parse_stream(await resp.text())
    assert resp.status == 200 and events[0]["phase"] == "failed" and events[0]["status_code"] == 503
    assert "accepts browsers" in events[0]["message"]


async def test_v2_for_an_agent_backed_member_is_the_launch_page_streaming_from_the_agent(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client, (m0,) = await make(aiohttp_server, aiohttp_client, "ticket")
    resp = await client.get("/v2/gh/org/repo/HEAD?labpath=a.ipynb", allow_redirects=False)
    html = await resp.text()
    assert resp.status == 200 and "/static/launch.js" in html
    assert f"{m0.url}/build/gh/org/repo/HEAD?labpath=a.ipynb" in html.replace("\\u0026", "&").replace("&amp;", "&")
    assert "ticket=" in html
    # The page may open its stream on that agent, and nowhere else.
    assert f"connect-src 'self' {m0.url};" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/v2/gh/org/repo/HEAD", "/v2/gh/org/repo/HEAD?urlpath=lab"])
async def test_v2_for_a_binderhub_member_is_its_own_page(aiohttp_server: Any, aiohttp_client: Any, path: str) -> None:
    client, _ = await make(aiohttp_server, aiohttp_client, "binderhub")
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 307 and resp.headers["Location"] == f"https://m0.example{path}"
