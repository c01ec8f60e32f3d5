"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary directory, a database per test.

Shared by the broker's registry tests and the two-replica end-to-end tests; the session
fixture ``postgres`` in tests/conftest.py starts one server per test session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str | None:
    for candidate in [f"/usr/local/bin/{name}", *sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))]:
        if Path(candidate).exists():
            return str(candidate)
    return shutil.which(name)


def available() -> bool:
    return bool(pg_bin("initdb") and pg_bin("pg_ctl"))


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster; each test gets its own database from :meth:`new_database`."""

    port: int
    counter: int = 0

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        import asyncpg

        self.counter += 1
        name = f"registry_{os.getpid()}_{self.counter}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def connect(self, url: str) -> Any:
        """A plain asyncpg connection to the database of ``url`` (to count rows behind the broker's back)."""
        import asyncpg

        database = url.rsplit("/", 1)[1]
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database=database)


def _run_as() -> dict[str, Any]:
    # initdb refuses to run as root: run the server as the postgres user then.
    return {"user": "postgres"} if os.geteuid() == 0 else {}


def start(workdir: Path, port: int) -> None:
    """initdb and start a cluster in ``workdir`` listening on 127.0.0.1:``port`` (trust auth, no fsync)."""
    run_as = _run_as()
    if run_as:
        shutil.chown(workdir, "postgres")
    data = workdir / "data"
    subprocess.run([pg_bin("initdb") or "initdb", "-D", str(data), "-U", "postgres", "-A", "trust",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=120, **run_as)
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([pg_bin("pg_ctl") or "pg_ctl", "-D", str(data), "-o", options, "-l",
                    str(workdir / "log"), "-w", "-t", "60", "start"],
                   check=True, capture_output=True, timeout=90, **run_as)


def stop(workdir: Path) -> None:
    subprocess.run([pg_bin("pg_ctl") or "pg_ctl", "-D", str(workdir / "data"), "-m", "immediate", "-w", "stop"],
                   capture_output=True, timeout=60, **_run_as())
    shutil.rmtree(workdir, ignore_errors=True)


def new_workdir() -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="fedbroker-pg-"))
    os.chmod(workdir, 0o755)
    return workdir
