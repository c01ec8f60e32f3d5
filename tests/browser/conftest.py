"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), a real federation."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from fedbroker.demo.run import DemoFederation
from federation_fixture import CHROMIUM, CHROMIUM_ARGS, start_federation, stop_federation


@pytest.fixture(scope="session")
def browser_available(require_component: Callable[[bool, str], None]) -> None:
    """Skip (fail under CI) before anything starts when Playwright or Chromium is missing."""
    require_component(importlib.util.find_spec("playwright") is not None,
                      "the playwright package is not installed (pip install playwright)")
    require_component(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(scope="module")
def chromium(browser_available: None, federation: DemoFederation) -> Iterator[Any]:
    """A headless Chromium from /usr/bin/chromium for one test module.

    Playwright's sync API runs an event loop on this thread while it is open, so it must not
    outlive the module (later asyncio tests need the thread) and it starts after the
    federation, whose start uses ``asyncio.run``.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def federation(browser_available: None) -> Iterator[DemoFederation]:
    """The demo federation (broker + three members) for every browser test of the session."""
    directory = Path(tempfile.mkdtemp(prefix="fed-browser-"))
    fed = start_federation(directory)
    try:
        yield fed
    finally:
        leftovers = stop_federation(fed)
        shutil.rmtree(directory, ignore_errors=True)
        assert leftovers == [], f"processes left running after stop: {leftovers}"


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context and page per test (its own sessionStorage and cookies)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
