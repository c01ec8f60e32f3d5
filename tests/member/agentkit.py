"""Helpers and fixtures for the member agent tests: git repos, configs, broker keys, signed requests, a fake backend."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

import pytest

from fedmember.app import make_app
from fedmember.backends.base import Backend, BackendConfig, BackendContext
from fedmember.config import MemberConfig
from fedproto.clock import SystemClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.launch import LaunchEvent, LaunchRequest, parse_sse_data
from fedproto.repospec import RepoSpec
from fedproto.status import Capacity, HealthCheck
from fedproto.tokens import sign_request

MEMBER_ID = "site-a"
BROKER_ID = "test-broker"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A function making a local git repo with the given files committed on ``main``."""
    count = 0

    def make(files: dict[str, str] | None = None, name: str | None = None) -> Path:
        nonlocal count
        count += 1
        repo = tmp_path / "repos" / (name or f"repo{count}")
        repo.mkdir(parents=True)
        git(repo, "init", "--quiet", "--initial-branch=main")
        for rel, text in (files if files is not None else {"requirements.txt": ""}).items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        (repo / "README.md").write_text("# test repo\n")
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", "init")
        return repo

    return make


def git_spec_of(repo: Path, ref: str = "main") -> str:
    return f"{quote('file://' + str(repo), safe='')}/{ref}"


@pytest.fixture
def broker_ring() -> KeyRing:
    return KeyRing([PrivateKey.generate()])


def member_config(tmp_path: Path, *, backend: dict[str, Any] | None = None, **member: Any) -> MemberConfig:
    """A config in ``tmp_path`` with member keys on disk."""
    KeyRing.load_or_create(tmp_path / "keys")
    data = {
        "member": {"id": MEMBER_ID, "agent_url": "http://127.0.0.1:1", "public_url": "http://127.0.0.1", "dev": True, **member},
        "broker": {"url": "http://127.0.0.1:2", "id": BROKER_ID},
        # Sandboxed where bwrap exists (always in CI); the sandbox's own tests require it.
        "backend": backend or {"kind": "local", "pip_args": ["--no-index"], **({} if shutil.which("bwrap") else {"isolation": "none"})},
        "config_dir": tmp_path,
    }
    return MemberConfig.model_validate(data)


@pytest.fixture
def config(tmp_path: Path) -> MemberConfig:
    return member_config(tmp_path)


@dataclass
class Signer:
    """Signs requests as the broker would."""

    ring: KeyRing
    issuer: str = BROKER_ID
    audience: str = MEMBER_ID
    clock: Any = field(default_factory=SystemClock)

    def token(self, method: str, path_qs: str, body: bytes = b"", **overrides: Any) -> str:
        args: dict[str, Any] = dict(
            issuer=self.issuer, audience=self.audience, method=method, path_qs=path_qs, body=body, clock=self.clock
        )
        key = overrides.pop("key", self.ring.signing_key)
        args.update(overrides)
        return sign_request(key, **args)

    def headers(self, method: str, path_qs: str, body: bytes = b"", **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(method, path_qs, body, **overrides)}"}


@pytest.fixture
def signer(broker_ring: KeyRing) -> Signer:
    return Signer(broker_ring)


class FakeConfig(BackendConfig):
    kind: str = "fake"


class FakeBackend(Backend):
    """A scripted backend: ``script`` is a list of events, or "hang" to wait forever."""

    kind = "fake"
    providers = ("git", "gh")
    Config = FakeConfig

    def __init__(self, script: list[LaunchEvent | str] | None = None, context: BackendContext | None = None) -> None:
        super().__init__(FakeConfig(), context or BackendContext(member_id=MEMBER_ID, state_dir=Path("/nonexistent")))
        self.script = script or []
        self.stopped: list[str] = []
        self.repos: list[RepoSpec] = []  # what each launch was handed, parsed once by the agent
        self.running: set[str] = set()
        self.started = self.stopped_all = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped_all = True
        self.running.clear()

    async def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        self.repos.append(repo)
        self.running.add(request.launch_id)
        for step in self.script:
            if step == "hang":
                await asyncio.Event().wait()
            elif step == "raise":
                raise RuntimeError("secret internal detail")
            else:
                assert isinstance(step, LaunchEvent)
                yield step

    async def stop_server(self, launch_id: str) -> bool:
        self.stopped.append(launch_id)
        known = launch_id in self.running
        self.running.discard(launch_id)
        return known

    async def health(self) -> list[HealthCheck]:
        return [HealthCheck(service="Fake", ok=True)]

    async def capacity(self) -> Capacity:
        return Capacity(total=3, used=len(self.running), building=0)

    async def images(self) -> list[str]:
        return ["gh:org/repo"]


READY = LaunchEvent(phase="ready", message="ok\n", url="http://127.0.0.1:9/", token="t")


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend([LaunchEvent(phase="waiting", message="w\n"), READY])


@pytest.fixture
async def agent(aiohttp_client: Any, config: MemberConfig, fake_backend: FakeBackend, broker_ring: KeyRing) -> Any:
    """A test client for an agent with the fake backend and pinned broker keys."""
    app = make_app(config, backend=fake_backend, broker_keys=broker_ring.public_set())
    return await aiohttp_client(app)


def launch_body(spec: str = "org/repo/main", provider: str = "gh", launch_id: str = "launch-0001", **extra: Any) -> bytes:
    return json.dumps({"provider": provider, "spec": spec, "launch_id": launch_id, **extra}).encode()


async def read_events(resp: Any) -> list[dict[str, Any]]:
    """Every ``data:`` event of a stream until it closes."""
    events = []
    async for line in resp.content:
        event = parse_sse_data(line)
        if event is not None:
            events.append(event)
    return events


async def post_launch(client: Any, signer: Signer, body: bytes, path: str = "/api/v1/launches") -> Any:
    return await client.post(path, data=body, headers=signer.headers("POST", path, body))

