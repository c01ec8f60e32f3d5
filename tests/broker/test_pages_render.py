"""The human pages, rendered server-side: home, launch, status, badge and static files."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock
from fedproto.datasets import Dataset
from fedproto.location import Location

from fedbroker.appkeys import CLOCK
from fedbroker.config import BrokerConfig
from fedbroker.web.htmlpage import STATIC_DIR, TEMPLATES_DIR
from brokerkit import broker_app, feed_health, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble

PUBLIC_URL = "https://broker.example.org"
HOSTILE = '<script>alert("x")</script>'


async def make(aiohttp_server: Any, aiohttp_client: Any, **config: Any) -> TestClient:
    clock, keyring = FakeClock(), new_keyring()
    doubles = []
    for member_id, lat, lon in (("alpha", 52.4, 4.9), ("beta", -33.9, 151.2)):
        d = MemberDouble(member_id, keyring.public_set(), clock, location=Location(lat=lat, lon=lon, region="r1"))
        d.url = str((await aiohttp_server(d.app())).make_url("/"))
        doubles.append(d)
    doubles[1].datasets = [Dataset(id=f"10.5281/zenodo.42{HOSTILE}", size_bytes=2**30)]
    entries = [d.entry() for d in doubles]
    # A member's display name is whatever its operator typed: the page must escape it.
    hostile = entries[1].record.model_copy(update={"display_name": f"Beta {HOSTILE}"})
    entries[1] = entries[1].__class__(record=hostile, keys=entries[1].keys)
    settings = {"dev": True, "public_url": PUBLIC_URL, **config}
    app = broker_app(BrokerConfig(**settings), clock, keyring, snapshot_of(entries))
    feed_health(app, doubles)
    return await aiohttp_client(app)


@pytest.fixture
async def client(aiohttp_server: Any, aiohttp_client: Any) -> TestClient:
    return await make(aiohttp_server, aiohttp_client)


class _Controls(HTMLParser):
    """Collects form controls, label targets and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[tuple[str, dict[str, str | None]]] = []
        self.label_for: set[str] = set()
        self.urls: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select", "textarea"):
            self.controls.append((tag, a))
        if tag == "label" and a.get("for"):
            self.label_for.add(a["for"] or "")
        self.urls += [v for k, v in attrs if k in ("src", "href", "action") and v]
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"] or "")


def parse(html: str) -> _Controls:
    p = _Controls()
    p.feed(html)
    return p


def launch_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="launch-config">(.*?)</script>', html, re.S)
    assert match, html
    return json.loads(match.group(1))


async def test_home_page_has_the_form_counts_and_badge(client: TestClient) -> None:
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert '<strong id="fact-members">2</strong>' in html and '<strong id="fact-routable">2</strong>' in html
    for prefix in ("gh", "gist", "gl", "git", "zenodo", "figshare", "hydroshare", "dataverse", "ckan"):
        assert f'<option value="{prefix}"' in html
    assert f"[![Binder]({PUBLIC_URL}/badge_logo.svg)]({PUBLIC_URL}/v2/gh/OWNER/REPOSITORY/HEAD)" in html
    assert f".. image:: {PUBLIC_URL}/badge_logo.svg\n   :target: {PUBLIC_URL}/v2/gh/" in html
    assert parse(html).scripts == ["/static/home.js"]


@pytest.mark.parametrize("path", ["/", "/status", "/v2/gh/org/repo/HEAD"], ids=["home", "status", "launch"])
async def test_every_control_has_a_label(client: TestClient, path: str) -> None:
    page = parse(await (await client.get(path)).text())
    for tag, attrs in page.controls:
        assert attrs.get("id") in page.label_for or attrs.get("aria-label"), (tag, attrs)


HOSTILE_LAUNCHES = [
    pytest.param("/v2/gh/org/repo/HEAD", {"urlpath": "</script><script>alert(1)</script>"}, id="urlpath"),
    pytest.param("/v2/gh/org/repo/HEAD", {"labpath": "<script>alert(1)</script>"}, id="labpath"),
    pytest.param("/v2/gh/org/repo/HEAD", {"data": '"><img src=x onerror=alert(1)>'}, id="data"),
]


@pytest.mark.parametrize(("path", "params"), HOSTILE_LAUNCHES)
async def test_launch_page_escapes_hostile_values(client: TestClient, path: str, params: dict[str, str]) -> None:
    resp = await client.get(path, params=params)
    html = await resp.text()
    assert resp.status == 200, html
    assert "<script>alert" not in html and "<img src=x" not in html and "</script><script>" not in html
    config = launch_config(html)  # the values survive intact, as data
    if "urlpath" in params:
        assert config["urlpath"] == params["urlpath"]
    if "labpath" in params:
        assert config["urlpath"] == "lab/tree/" + params["labpath"]
    if "data" in params:
        assert config["data"] == [params["data"]]
        assert "data=%22%3E%3Cimg" in config["build_url"] and "data=%22%3E%3Cimg" in config["route_url"]


async def test_launch_page_passes_data_and_labpath(client: TestClient) -> None:
    resp = await client.get("/v2/gh/org/repo/main?labpath=/notebooks/a.ipynb&data=10.1/x&data=s3://b/c")
    config = launch_config(await resp.text())
    assert config["build_url"] == "/build/gh/org/repo/main?data=10.1%2Fx&data=s3%3A%2F%2Fb%2Fc"
    assert config["route_url"] == "/api/v1/route?provider=gh&spec=org%2Frepo%2Fmain&data=10.1%2Fx&data=s3%3A%2F%2Fb%2Fc"
    assert config["urlpath"] == "lab/tree/notebooks/a.ipynb"


@pytest.mark.parametrize("spec", [
    "https%3A%2F%2Fexample.org%2F%3Cscript%3Ealert(1)%3C%2Fscript%3E/HEAD",
    "https%3A%2F%2Fexample.org%2Fx/%3Cscript%3E",
], ids=["url", "ref"])
async def test_hostile_specs_are_refused_on_an_escaped_page(client: TestClient, spec: str) -> None:
    resp = await client.get(f"/v2/git/{spec}")
    html = await resp.text()
    assert resp.status == 400 and "<script>" not in html and "launch-config" not in html


@pytest.mark.parametrize(("path", "status", "text"), [
    pytest.param("/v2/nosuch/org/repo/HEAD", 404, "No provider found", id="unknown-provider"),
    pytest.param("/v2/gh/-bad/repo/HEAD", 400, "invalid GitHub repository", id="bad-spec"),
])
async def test_launch_page_refusals_are_html(client: TestClient, path: str, status: int, text: str) -> None:
    resp = await client.get(path)
    html = await resp.text()
    assert resp.status == status and resp.content_type == "text/html"
    assert text in html and 'href="/"' in html


async def test_status_page_escapes_member_values(client: TestClient) -> None:
    resp = await client.get("/status")
    html = await resp.text()
    assert resp.status == 200
    assert HOSTILE not in html.split('id="status-config">', 1)[1]
    assert "Beta &lt;script&gt;" in html and "10.5281/zenodo.42&lt;script&gt;" in html
    assert 'id="member-alpha"' in html and 'data-health="healthy"' in html
    assert '<circle class="marker routable" cx="184.9" cy="37.6"' in html  # lon + 180, 90 - lat
    config = json.loads(re.search(r'id="status-config">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert config == {"refresh_seconds": 3.0}  # the cards are rendered here only; the script refreshes by refetching


async def test_federation_summary_has_last_poll_and_outcomes(client: TestClient) -> None:
    events = parse_stream(await (await client.get("/build/gh/org/repo/HEAD", headers={"Accept": "text/event-stream"})).text())
    assert events[-1]["phase"] == "ready"
    summary = await (await client.get("/api/v1/federation")).json()
    assert summary["generated_at"] == client.app[CLOCK].now()
    by_id = {m["id"]: m for m in summary["members"]}
    assert all(m["last_poll_at"] is not None and m["last_poll_ok"] is True for m in by_id.values())
    outcomes = [o["outcome"] for m in by_id.values() for o in m["recent_outcomes"]]
    assert outcomes == ["ready"]
    html = await (await client.get("/status")).text()
    assert "1 ready" in html


async def test_badge_and_static_files_are_served(client: TestClient) -> None:
    resp = await client.get("/badge_logo.svg")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert "launch" in await resp.text()
    for name in ("style.css", "home.js", "launch.js", "status.js", "world.svg", "logo.svg"):
        assert (await client.get(f"/static/{name}")).status == 200, name


async def test_redirect_mode_still_serves_home_and_status(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await make(aiohttp_server, aiohttp_client, mode="redirect")
    assert (await client.get("/")).status == 200 and (await client.get("/status")).status == 200
    assert (await client.get("/v2/gh/org/repo/HEAD", allow_redirects=False)).status == 307


# The only absolute URLs allowed in what the broker serves: XML namespaces, which name, never load.
NAMESPACES = ("http://www.w3.org/2000/svg",)
URL = re.compile(r"https?://[^\s\"'<>)]+")


@pytest.mark.parametrize("path", sorted([*STATIC_DIR.iterdir(), *TEMPLATES_DIR.iterdir()]), ids=lambda p: p.name)
def test_no_external_urls_in_static_files_and_templates(path: Any) -> None:
    found = [u for u in URL.findall(path.read_text(encoding="utf-8")) if not u.startswith(NAMESPACES)]
    assert found == []


@pytest.mark.parametrize("path", ["/", "/status", "/v2/gh/org/repo/HEAD"], ids=["home", "status", "launch"])
async def test_pages_load_nothing_from_elsewhere(client: TestClient, path: str) -> None:
    html = await (await client.get(path)).text()
    page = parse(html)
    external = [u for u in page.urls if u.startswith(("http:", "https:", "//")) and not u.startswith(PUBLIC_URL)]
    # The launch page links (never loads) the repository's own page.
    assert external in ([], ["https://github.com/org/repo"])


async def test_the_provider_table_is_one_table_for_api_form_and_parser(client: TestClient) -> None:
    from fedproto.providers import provider_table
    from fedproto.repospec import PROVIDERS

    api = (await (await client.get("/api/v1/providers")).json())["providers"]
    home = await (await client.get("/")).text()
    embedded = json.loads(re.search(r'<script type="application/json" id="providers">(.*?)</script>', home, re.S).group(1))  # type: ignore[union-attr]
    assert api == embedded == provider_table()
    assert [p["prefix"] for p in api] == re.findall(r'<option value="([a-z]+)"', home)[:len(api)]
    assert {p["prefix"] for p in api} == set(PROVIDERS)
