"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from typing import Callable

import pytest

from fedproto.clock import FakeClock


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def require_component() -> Callable[[bool, str], None]:
    """``require_component(ok, why)``: skip with the reason locally, fail under CI=true.

    Tests that need a system component (PostgreSQL, configurable-http-proxy,
    Chromium) install or start it themselves; when that is impossible on a
    developer machine they skip and say why, but CI must never skip them.
    """

    def require(ok: bool, why: str) -> None:
        if ok:
            return
        if _in_ci():
            pytest.fail(f"required in CI: {why}")
        print(f"SKIP: {why}")
        pytest.skip(why)

    return require
