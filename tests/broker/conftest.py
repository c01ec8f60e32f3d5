"""Shared broker fixtures: a config in tmp_path, a running app, an admin token, member keys, PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from fedbroker.app import make_app
from fedbroker.appkeys import REGISTRY
from fedbroker.config import BrokerConfig
from fedbroker.registry.store import ADMIN_SCOPES
from fedproto.clock import FakeClock
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.tokens import sign_request

from brokerkit import fedbroker_command

START = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def broker_keyring() -> KeyRing:
    return KeyRing([PrivateKey.generate(created=START - 10)])


@pytest.fixture
def broker_config(tmp_path: Path) -> BrokerConfig:
    """A config whose registry and keys live in tmp_path; fast snapshot polling."""
    return BrokerConfig(base_dir=tmp_path, snapshot_refresh=0.2)


BrokerFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_broker(aiohttp_client: Any, clock: FakeClock, broker_keyring: KeyRing,
                broker_config: BrokerConfig) -> BrokerFactory:
    """Start a broker app; keyword arguments override config fields."""

    async def start(**overrides: Any) -> TestClient:
        config = broker_config.model_copy(update=overrides)
        return await aiohttp_client(make_app(config, clock=clock, keyring=broker_keyring))

    return start


@pytest.fixture
async def broker(make_broker: BrokerFactory) -> TestClient:
    return await make_broker()


async def _add_admin_token(client: TestClient, scopes: tuple[str, ...] = ADMIN_SCOPES,
                          name: str = "test-admin", ttl: float = 3600.0) -> str:
    """An admin token written straight into the running broker's store."""
    from fedbroker.registry.adminauth import new_admin_secret

    secret = new_admin_secret()
    async with client.app[REGISTRY].store.write() as tx:
        await tx.add_admin_token(secret=secret, name=name, scopes=list(scopes), ttl=ttl)
    return secret


@pytest.fixture
async def admin_token(broker: TestClient) -> str:
    """A token with every admin scope for ``broker``."""
    return await _add_admin_token(broker)


@pytest.fixture
def add_admin_token() -> Callable[..., Awaitable[str]]:
    """``await add_admin_token(client, scopes=..., ttl=...)``: another admin token."""
    return _add_admin_token


@pytest.fixture
def admin_headers(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


# -- members ------------------------------------------------------------------

@dataclass
class MemberKit:
    """A would-be member: its key and what it sends when enrolling."""

    member_id: str
    key: PrivateKey = field(default_factory=lambda: PrivateKey.generate(created=START - 5))

    @property
    def jwks(self) -> dict[str, Any]:
        return PublicKeySet([self.key.public]).to_jwks()

    def enrollment_body(self, token: str, **overrides: Any) -> dict[str, Any]:
        body = {
            "token": token,
            "member_id": self.member_id,
            "display_name": f"Member {self.member_id}",
            "agent_url": f"https://{self.member_id}.example.org/agent",
            "public_url": f"https://{self.member_id}.example.org/",
            "location": {"lat": 52.5, "lon": 13.4, "region": "eu-central", "country": "DE"},
            "datasets": [{"id": "10.5281/zenodo.123", "size_bytes": 1000}],
            "labels": {"site": self.member_id},
            "jwks": self.jwks,
        }
        body.update(overrides)
        return body

    def signed(self, path: str, body: dict[str, Any], *, audience: str, clock: FakeClock,
               key: PrivateKey | None = None, issuer: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of a request signed by this member (or by ``key``)."""
        raw = json.dumps(body).encode()
        token = sign_request(key or self.key, issuer=issuer or self.member_id, audience=audience,
                             method="POST", path_qs=path, body=raw, clock=clock)
        return raw, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@pytest.fixture
def member_kit() -> Callable[[str], MemberKit]:
    return MemberKit


async def _mint_token(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    body.setdefault("name", "test token")
    resp = await client.post("/api/v1/enroll-tokens", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["token"]


async def _enroll(client: TestClient, kit: MemberKit, token: str, clock: FakeClock,
                 **overrides: Any) -> Any:
    """POST a correctly signed enrollment for ``kit``; returns the response."""
    from fedproto.enrollment import EnrollmentToken

    audience = EnrollmentToken.parse(token).broker_kid
    raw, headers = kit.signed("/api/v1/enroll", kit.enrollment_body(token, **overrides),
                              audience=audience, clock=clock)
    return await client.post("/api/v1/enroll", data=raw, headers=headers)


@pytest.fixture
def mint_token() -> Callable[..., Awaitable[str]]:
    """``await mint_token(client, admin_headers, ttl=..., auto_approve=...)``: a new enrollment token."""
    return _mint_token


@pytest.fixture
def do_enroll(clock: FakeClock) -> Callable[..., Awaitable[Any]]:
    """``await do_enroll(client, kit, token, **body_overrides)``: a correctly signed enrollment."""

    async def run(client: TestClient, kit: MemberKit, token: str, **overrides: Any) -> Any:
        return await _enroll(client, kit, token, clock, **overrides)

    return run


# -- PostgreSQL (the session's server is the ``postgres`` fixture of tests/conftest.py) ------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty registry database URL: SQLite in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        yield await server.new_database()


# -- real broker processes --------------------------------------------------------------

CliRunner = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def run_cli() -> CliRunner:
    """``code, stdout, stderr = await run_cli(*args, env={...})``: the real ``fedbroker`` command."""

    async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *fedbroker_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        return proc.returncode or 0, out.decode(), err.decode()

    return run


@dataclass
class BrokerProcess:
    """A ``fedbroker serve`` subprocess and the URL it announced."""

    proc: asyncio.subprocess.Process
    url: str
    log_path: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM, then the exit status of the graceful stop."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout=15)


@pytest.fixture
async def serve_broker(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[BrokerProcess]]]:
    """``await serve_broker(config_path, *args)``: start ``fedbroker serve --port 0`` and wait for its URL."""
    started: list[BrokerProcess] = []

    async def start(config: Path, *args: str) -> BrokerProcess:
        log_path = tmp_path / f"serve-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *fedbroker_command(), "serve", "--config", str(config), "--port", "0", *args,
                stdout=asyncio.subprocess.PIPE, stderr=log,
            )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)  # type: ignore[union-attr]
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"fedbroker serve did not start: {log_path.read_text()[-2000:]}") from None
        text = line.decode().strip()
        assert text.startswith("fedbroker listening on http://"), (text, log_path.read_text()[-2000:])
        process = BrokerProcess(proc=proc, url=text.rsplit(" ", 1)[1], log_path=log_path)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.returncode is None:
            process.kill()
            await process.proc.wait()
