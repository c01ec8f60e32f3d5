"""A real federation for the browser tests: ``fedbroker demo``'s broker and three member agents.

The demo's own orchestration (:class:`fedbroker.demo.run.DemoFederation`) runs the commands an
operator would; here it gets free ports and fast health polls, so a killed member shows up
on the status page within a couple of seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fedbroker.demo.childproc import sweep_processes_under
from fedbroker.demo.run import DemoFederation
from fedbroker.demo.repos import ExampleRepo

BROWSER_BROKER_SETTINGS: dict[str, dict[str, Any]] = {
    "health": {"interval": 0.5, "timeout": 1.0, "unhealthy_interval": 0.5, "jitter": 0.1},
}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
DOC_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"


def start_federation(directory: Path) -> DemoFederation:
    """Broker and members up, every member routable; everything stopped again if that fails."""
    fed = DemoFederation(directory, port=0, broker_settings=BROWSER_BROKER_SETTINGS)
    try:
        fed.start(timeout=90)
    except BaseException:
        stop_federation(fed)
        raise
    return fed


def stop_federation(fed: DemoFederation) -> list[str]:
    """Stop everything; returns what was still running under the federation's directory (swept)."""
    fed.stop()
    return sweep_processes_under(fed.directory)


def repo_named(fed: DemoFederation, name: str) -> ExampleRepo:
    return next(r for r in fed.repos if r.name == name)


def missing_repo_path(directory: Path) -> str:
    """A ``/v2/git/...`` launch path of a repository that does not exist (the member's clone fails)."""
    url = f"file://{directory / 'no-such-repository'}"
    return f"/v2/git/{quote(url, safe='')}/main"


def save_screenshot(page: Any, name: str, *, for_docs: bool = False) -> Path:
    """A full-page PNG under test-artifacts/browser/; with FEDERATION_UPDATE_SCREENSHOTS=1 also in
    docs/screenshots/ for the README (opt-in, so a test run never changes the source tree)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if for_docs and os.environ.get("FEDERATION_UPDATE_SCREENSHOTS") == "1":
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_SCREENSHOTS / f"{name}.png")
    return path
