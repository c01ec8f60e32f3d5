"""In a real browser: launching from the home page until a running jupyter-server, and a failed launch."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from fedbroker.demo.run import DemoFederation
from federation_fixture import missing_repo_path, repo_named, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SERVER_URL = re.compile(r"^http://127\.0\.0\.1:\d+/.*[?&]token=")


def test_launch_from_the_home_page_reaches_a_jupyter_server(page: Any, federation: DemoFederation) -> None:
    page.goto(federation.broker_url + "/")
    assert page.locator("#fact-members").inner_text() == str(len(federation.members))
    hello = repo_named(federation, "hello")
    page.select_option("#provider", "git")
    page.fill("#repository", hello.url)
    page.fill("#ref", "main")
    page.fill("#path", "/")
    page.select_option("#path-type", "urlpath")
    launch_url = page.input_value("#launch-url")
    assert launch_url == f"{federation.broker_url}/v2/git/{hello.spec()}?urlpath=%2F"
    assert f"[![Binder]({federation.broker_url}/badge_logo.svg)]({launch_url})" == page.input_value("#badge-markdown")
    save_screenshot(page, "home-filled")

    # The page's redirect to the member's server is answered "204 No Content" once, so the
    # browser stays on the launch page for its screenshot; then its own link is followed.
    redirects: list[str] = []

    def hold(route: Any) -> None:
        redirects.append(route.request.url)
        route.fulfill(status=204)

    page.route(SERVER_URL, hold, times=1)
    page.click("#launch")
    page.wait_for_selector("#ready:not([hidden])", timeout=60_000)
    assert page.locator("#serving-member").inner_text().startswith("Served by ")
    page.wait_for_selector("#serving-costs dt")  # the explanation arrives from /api/v1/route
    assert "Why: chosen" in page.locator("#serving-reason").inner_text()
    assert page.get_attribute("#bar", "aria-valuenow") == "100"
    assert "ready" in page.locator("#phase-text").inner_text().lower()
    page.wait_for_timeout(700)  # the bar's width transition
    save_screenshot(page, "launch", for_docs=True)

    target = page.get_attribute("#ready-link", "href") or ""
    assert redirects == [target], (redirects, target)
    assert target.startswith("http://127.0.0.1:") and not target.startswith(federation.broker_url)
    assert re.match(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+$", target), target  # urlpath "/" is the root
    page.click("#ready-link")
    page.wait_for_load_state()
    assert page.url.startswith(target.split("?")[0])  # jupyter-server may swap the token for a cookie
    # The server's default page is JupyterLab, listing the repository's files.
    page.locator(".jp-DirListing-itemText", has_text="hello.ipynb").wait_for(timeout=60_000)
    assert "/lab" in page.url


def test_a_failed_launch_shows_the_reason_and_a_retry_button(page: Any, federation: DemoFederation) -> None:
    path = missing_repo_path(federation.directory)
    page.goto(federation.broker_url + path)
    page.wait_for_selector("#failed:not([hidden])", timeout=60_000)
    reason = page.locator("#failed-reason").inner_text()
    assert any(word in reason.lower() for word in ("no-such-repository", "clone", "fetch")), reason
    retry = page.locator("#retry")
    assert retry.is_visible() and retry.is_enabled()
    assert page.evaluate("document.activeElement.id") == "retry"  # keyboard users land on it
    save_screenshot(page, "launch-failed", for_docs=True)
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Retry, from the keyboard
    page.wait_for_selector("#failed:not([hidden])", timeout=60_000)
    assert page.locator("#failed-reason").inner_text() == reason


# What people paste, and the launch path BinderHub's home page would make of it.
LAUNCH_PATHS = [
    ("gh", "https://github.com/binder-examples/requirements.git", "", "/v2/gh/binder-examples/requirements/HEAD"),
    ("gh", "org/repo", "feature/x", "/v2/gh/org/repo/feature%2Fx"),
    ("gist", "https://gist.github.com/user/abc123", "", "/v2/gist/user/abc123/HEAD"),
    ("gl", "https://gitlab.com/group/sub/project", "v1", "/v2/gl/group%2Fsub%2Fproject/v1"),
    ("git", "https://git.example.org/r.git", "main", "/v2/git/https%3A%2F%2Fgit.example.org%2Fr.git/main"),
    ("zenodo", "https://doi.org/10.5281/zenodo.3242074", "", "/v2/zenodo/10.5281/zenodo.3242074"),
    ("ckan", "https://ckan.example.org/dataset/x", "", "/v2/ckan/https%3A%2F%2Fckan.example.org%2Fdataset%2Fx"),
]


def test_home_page_builds_binderhub_launch_urls(page: Any, federation: DemoFederation) -> None:
    page.goto(federation.broker_url + "/")
    for provider, repository, ref, path in LAUNCH_PATHS:
        page.select_option("#provider", provider)
        if page.is_enabled("#ref"):
            page.fill("#ref", ref)
        page.fill("#repository", repository)
        assert page.input_value("#launch-url") == federation.broker_url + path, (provider, repository)
    assert page.is_disabled("#ref")  # data providers have no git ref
    # Datasets and a file to open become ?data= and ?labpath=, from the keyboard alone.
    page.select_option("#provider", "gh")
    page.fill("#repository", "org/repo")
    page.fill("#ref", "")
    page.focus("#add-dataset")
    page.keyboard.press("Enter")
    page.keyboard.type("10.5281/zenodo.1")
    page.fill("#data-1", "s3://bucket/x")
    page.fill("#path", "/notebooks/a.ipynb")
    expected = "/v2/gh/org/repo/HEAD?data=s3%3A%2F%2Fbucket%2Fx&data=10.5281%2Fzenodo.1&labpath=notebooks%2Fa.ipynb"
    assert page.input_value("#launch-url") == federation.broker_url + expected
    page.click("#launch-form button[aria-label='Remove dataset 2']")
    assert "zenodo.1" not in page.input_value("#launch-url")
    page.fill("#repository", "binder-examples/requirements")
    page.fill("#data-1", "10.5281/zenodo.3242074")
    page.fill("#path", "index.ipynb")
    save_screenshot(page, "home", for_docs=True)


def _stream(*events: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events)


def test_a_failover_is_shown_as_it_happens(page: Any, federation: DemoFederation) -> None:
    """The broker's own failover events, replayed: the page names the failed member and the next one."""
    hello = repo_named(federation, "hello")
    body = _stream(
        {"phase": "waiting", "message": "Waiting for build to start...\n", "member": "berlin"},
        {"phase": "fetching", "message": "Fetching...\n", "member": "berlin"},
        {"phase": "waiting", "member": "berlin", "message": "Member berlin could not launch this (connection refused); "
                                                              "trying member montreal (attempt 2 of 3).\n"},
        {"phase": "building", "message": "Building...\n", "member": "montreal"},
        {"phase": "failed", "status_code": 503, "member": "montreal",
         "message": "Launch failed on 2 member(s): berlin: connection refused; montreal: quota. Please try again later.\n"},
    )
    page.route(re.compile(r".*/build/git/.*"), lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=body))
    page.goto(federation.broker_url + hello.launch_path())
    page.wait_for_selector("#failed:not([hidden])")
    failovers = page.locator("#failovers li")
    assert failovers.count() == 1
    assert "berlin could not launch this" in failovers.first.inner_text()
    from playwright.sync_api import expect  # here: without Playwright the fixtures skip (or fail in CI) first

    # (Not wait_for_function: the pages' CSP forbids the eval it polls with.)
    expect(page.locator("#serving-reason")).to_contain_text("failover")
    assert "Montréal (montreal)" in page.locator("#serving-member").inner_text()
    assert "Launch failed on 2 member(s)" in page.locator("#failed-reason").inner_text()
    assert page.locator("#launch-verb").inner_text() == "Could not start"


READY_URL = "http://127.0.0.1:9/user/x/"


@pytest.mark.parametrize(("query", "target"), [
    ("", READY_URL + "?token=t0k"),
    ("?urlpath=lab%3Fx%3D1", READY_URL + "lab?x=1&token=t0k"),
    ("?labpath=notebooks/a.ipynb", READY_URL + "lab/tree/notebooks/a.ipynb?token=t0k"),
    ("?urlpath=https://evil.example/steal", READY_URL + "?token=t0k"),
    ("?urlpath=//evil.example/steal", READY_URL + "evil.example/steal?token=t0k"),
    ("?urlpath=../../../elsewhere", READY_URL + "?token=t0k"),
], ids=["default-server-root", "urlpath", "labpath", "absolute-url", "protocol-relative", "dot-dot"])
def test_ready_goes_to_the_server_path_and_keeps_the_token_there(
    page: Any, federation: DemoFederation, query: str, target: str,
) -> None:
    ready = {"phase": "ready", "message": "server running\n", "member": "berlin", "url": READY_URL, "token": "t0k",
             "decision": "d1"}
    page.route(re.compile(r".*/build/git/.*"), lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=_stream(ready)))
    went: list[str] = []
    page.route(re.compile(r"^http://(127\.0\.0\.1:9|evil\.example)/.*"),
               lambda route: (went.append(route.request.url), route.fulfill(status=204)))
    page.goto(federation.broker_url + f"/v2/git/{repo_named(federation, 'hello').spec()}{query}")
    # Wait for the redirect itself (answered 204, so the page stays) rather than for the page.
    deadline = time.monotonic() + 20
    while not went and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert went == [target]
    assert page.get_attribute("#ready-link", "href") == target
