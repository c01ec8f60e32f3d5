"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import subprocess
from typing import Callable, Iterator

import pytest

from fedproto.clock import FakeClock

import pgserver  # tests/pgserver.py


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


@pytest.fixture(scope="session")
def postgres(require_component: Callable[[bool, str], None]) -> Iterator[pgserver.PostgresServer]:
    """Start PostgreSQL (initdb + pg_ctl, as the postgres user when run as root) for this session.

    Skips with the reason when PostgreSQL cannot be had, except under CI=true, where it fails.
    """
    require_component(pgserver.available(), "PostgreSQL: initdb/pg_ctl not found")
    workdir = pgserver.new_workdir()
    port = pgserver.free_port()
    try:
        pgserver.start(workdir, port)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, KeyError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pgserver.stop(workdir)
        require_component(False, f"PostgreSQL did not start: {exc} {detail.decode(errors='replace')[-500:]}")
    try:
        yield pgserver.PostgresServer(port=port)
    finally:
        pgserver.stop(workdir)
