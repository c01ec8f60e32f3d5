"""A browser launch through a JupyterHub member lands in JupyterLab, not on the hub's "Sign in" page.

Real parts: a JupyterHub (5+) with configurable-http-proxy and jupyter-singleuser servers, a
`fedbroker serve` and a `fedmember serve` (jupyterhub backend), and Debian's Chromium. The hub's
config sets what the README tells operators to set, ``JUPYTERHUB_ALLOW_TOKEN_IN_URL`` for the
servers: without it the server refuses the launch's ``?token=`` and the browser ends on the hub's
login page. Development mode (plain http on loopback) keeps this test about the browser; the
production path (https, private CA) is tests/e2e/test_e2e_production_tls.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest

from federation_fixture import CHROMIUM, CHROMIUM_ARGS, save_screenshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "member"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from backend_fixtures import run_jupyterhub  # noqa: E402
from tlskit import GIT_ENV, edit_toml, free_port, must, serve  # noqa: E402

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def hub_federation(tmp_path_factory: pytest.TempPathFactory, browser_available: None) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("hubfed")
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# hello\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True)
    (tmp / "hub").mkdir()
    with run_jupyterhub(tmp / "hub") as hub:
        out = must("fedbroker", "init", str(tmp / "broker"), "--broker-id", "hubfed")
        admin = out.strip().splitlines()[-1].removeprefix("admin token: ")
        edit_toml(tmp / "broker" / "broker.toml", {"health": {"interval": 0.5, "timeout": 2.0, "jitter": 0.1}})
        broker = serve([str(BIN / "fedbroker"), "serve", "--config", str(tmp / "broker" / "broker.toml"), "--port", "0",
                        "--dev"], tmp / "broker.log", "fedbroker listening on")
        agent = None
        try:
            env = {"FEDBROKER_URL": broker.url, "FEDBROKER_TOKEN": admin}
            port = free_port()
            must("fedmember", "init", str(tmp / "member"), "--backend", "jupyterhub", "--id", "hub-site",
                 "--agent-url", f"http://127.0.0.1:{port}", "--public-url", hub["public_url"])
            edit_toml(tmp / "member" / "member.toml", {
                "member": {"port": port, "dev": True},
                "backend": {"kind": "jupyterhub", "hub_api_url": hub["api_url"], "public_hub_url": hub["public_url"],
                            "token": {"token_file": str(hub["token_file"])}, "unmatched": "default",
                            "providers": ["git"], "start_timeout": 90.0},
            })
            token = must("fedbroker", "enroll-token", "create", "--name", "hub", "--auto-approve", env=env).split()[-1]
            must("fedmember", "enroll", broker.url, "--token", token, "--config", str(tmp / "member" / "member.toml"),
                 "--dev")
            agent = serve([str(BIN / "fedmember"), "serve", "--config", str(tmp / "member" / "member.toml")],
                          tmp / "member.log", "fedmember listening on")
            yield {"broker": broker.url, "repo": f"file://{repo}", "hub": hub}
        finally:
            if agent is not None:
                agent.stop()
            broker.stop()


@pytest.fixture
def hub_page(browser_available: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_launch_through_a_jupyterhub_member_lands_in_jupyterlab(hub_federation: dict[str, Any], hub_page: Any,
                                                               wait_routable: Callable[..., None]) -> None:
    wait_routable(hub_federation["broker"])
    page = hub_page
    page.goto(f"{hub_federation['broker']}/v2/git/{quote(hub_federation['repo'], safe='')}/main?urlpath=lab")
    page.wait_for_url(f"{hub_federation['hub']['public_url']}/user/**", timeout=120_000)
    # JupyterLab's shell and its launcher: what the user sees, not only where the browser went.
    page.wait_for_selector(".jp-LabShell", timeout=60_000)
    page.wait_for_selector(".jp-Launcher", timeout=60_000)
    assert "/hub/login" not in page.url
    assert page.locator("text=Sign in").count() == 0
    save_screenshot(page, "jupyterhub-member-jupyterlab")


@pytest.fixture
def wait_routable() -> Callable[..., None]:
    def wait(broker_url: str, timeout: float = 60.0) -> None:
        import json
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{broker_url}/health", timeout=5) as resp:
                    if json.loads(resp.read())["ok"]:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("the JupyterHub member did not become routable")

    return wait
