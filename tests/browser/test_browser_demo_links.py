"""Every launch link the demo prints, opened in a real browser, ends in JupyterLab on its notebook.

The links come from the demo's own ``demo.json`` (what ``fedbroker demo`` prints), never rebuilt
here, and the checks are what a user sees: JupyterLab's notebook tab with the notebook's name and
its rendered title, and for the dataset example the dataset's files in JupyterLab's file browser.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from fedbroker.demo.repos import EXAMPLES
from fedbroker.demo.run import DemoFederation
from federation_fixture import save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SERVER_LAB = re.compile(r"^http://127\.0\.0\.1:\d+/lab")
LAUNCH_TIMEOUT_MS = 120_000
# What each example's code cell prints when the user runs it (its environment and kernel work).
PRINTS = {
    "hello": "Hello from",
    "tables": "federated: true",
    "dataset": "data/10.5281_zenodo.3242074/temperatures.csv 20 rows",
}


def _printed_links(federation: DemoFederation) -> dict[str, dict[str, Any]]:
    manifest = json.loads((federation.directory / "demo.json").read_text())
    return {repo["name"]: repo for repo in manifest["repos"]}


def _open_directory(page: Any, name: str) -> None:
    item = page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$")))
    item.first.dblclick()
    page.locator(".jp-BreadCrumbs").get_by_text(name, exact=True).wait_for()


def _run_all_cells(page: Any) -> Any:
    """Run > Run All Cells once the kernel says Idle; again if a run was lost while it connected."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # here: without Playwright the fixtures skip

    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=LAUNCH_TIMEOUT_MS)
    output = page.locator(".jp-Notebook .jp-OutputArea-output").first
    for _attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
        try:
            output.wait_for(timeout=30_000)
            return output
        except PlaywrightTimeout:
            continue
    output.wait_for(timeout=1)
    return output


def test_the_demo_prints_a_link_for_every_example(federation: DemoFederation) -> None:
    links = _printed_links(federation)
    assert sorted(links) == sorted(e.name for e in EXAMPLES)
    assert all(link["launch_url"].startswith(federation.broker_url + "/v2/git/") for link in links.values())


def test_every_example_has_an_expected_output() -> None:
    assert sorted(PRINTS) == sorted(e.name for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_each_printed_link_opens_jupyterlab_on_its_notebook(page: Any, federation: DemoFederation, example: Any) -> None:
    link = _printed_links(federation)[example.name]["launch_url"]
    page.goto(link)
    page.wait_for_url(SERVER_LAB, timeout=LAUNCH_TIMEOUT_MS)
    notebook = f"{example.name}.ipynb"
    # JupyterLab's own UI: the notebook open in a tab with its name, its markdown title rendered.
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text=notebook)
    tab.wait_for(timeout=LAUNCH_TIMEOUT_MS)
    heading = page.locator(".jp-Notebook .jp-RenderedMarkdown h1").first
    heading.wait_for()
    assert heading.inner_text().strip().rstrip("¶").strip() == example.title
    # Run it as a user would (Run > Run All Cells): the kernel starts in the launch's sandbox.
    output = _run_all_cells(page)
    save_screenshot(page, f"demo-link-{example.name}-run")
    assert PRINTS[example.name] in output.inner_text(), output.inner_text()
    if example.data:
        # The dataset is in the file browser, as data/<name>/ with its files.
        _open_directory(page, "data")
        dataset_dirs = page.locator(".jp-DirListing-itemText")
        dataset_dirs.first.wait_for()
        names = [n.strip() for n in dataset_dirs.all_inner_texts()]
        assert names == ["10.5281_zenodo.3242074"], names
        _open_directory(page, names[0])
        page.locator(".jp-DirListing-itemText", has_text="temperatures.csv").wait_for()
        listed = sorted(n.strip() for n in page.locator(".jp-DirListing-itemText").all_inner_texts())
        assert listed == ["README.txt", "temperatures.csv"], listed
    save_screenshot(page, f"demo-link-{example.name}", for_docs=bool(example.data))
