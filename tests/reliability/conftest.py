"""Fixtures of the reliability suite: one small real federation shared by the hostile-input tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import pytest

from fedbroker.demo.run import DemoFederation
from fedbroker.demo.sites import SITES


@pytest.fixture(scope="module")
def small_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoFederation]:
    """A real broker (relay mode) and one real member agent (local backend, dev mode)."""
    site = dataclasses.replace(SITES[0], capacity=4)
    fed = DemoFederation(Path(tmp_path_factory.mktemp("hostile")) / "fed", port=0, sites=[site])
    try:
        fed.start(timeout=120)
        yield fed
    finally:
        fed.stop()  # the member stops its jupyter-servers; leftovers are swept
