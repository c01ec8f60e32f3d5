"""The local backend for real: git clone, virtualenv, jupyter-server, culling, stopping."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
from agentkit import Signer, git_spec_of, launch_body, member_config, post_launch, read_events

from fedmember.app import make_app
from fedmember.backends.base import BackendContext
from fedmember.backends.local import LocalBackend, LocalConfig
from fedmember.backends.sandbox import SandboxError
from fedmember.config import ConfigError
from fedproto.clock import FakeClock, SystemClock
from fedproto.failures import Failure, fails_over
from fedproto.launch import LaunchRequest
from fedproto.repospec import RepoSpec

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def bubblewrap(require_component: Callable[[bool, str], None]) -> None:
    """Every launch here runs in the bubblewrap sandbox (the backend's default)."""
    require_component(shutil.which("bwrap") is not None, "bubblewrap is not installed (apt-get install bubblewrap)")


async def _api_status(url: str, token: str) -> int | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(url + "api/status", headers={"Authorization": f"token {token}"}) as resp:
                return resp.status
    except aiohttp.ClientError:
        return None


def _backend(tmp_path: Path, clock: Any = None, **settings: Any) -> LocalBackend:
    config = LocalConfig(pip_args=["--no-index"], **settings)
    context = BackendContext(
        member_id="site-a", state_dir=tmp_path / "state", dev=True, public_url="http://127.0.0.1/", clock=clock or SystemClock()
    )
    return LocalBackend(config, context)


async def _launch(backend: LocalBackend, spec: str, launch_id: str, **extra: Any) -> list[Any]:
    request = LaunchRequest(provider="git", spec=spec, launch_id=launch_id, **extra)
    return [event async for event in backend.launch(request, RepoSpec.parse("git", spec, allow_file=True))]


async def test_launch_through_the_agent_to_a_real_server(
    aiohttp_client: Any, tmp_path: Path, make_repo: Callable[..., Path], broker_ring: Any, signer: Signer
) -> None:
    repo = make_repo({"requirements.txt": "pyyaml\n"})
    config = member_config(tmp_path, backend={"kind": "local", "pip_args": ["--no-index"], "capacity": 2})
    client = await aiohttp_client(make_app(config, broker_keys=broker_ring.public_set()))
    events = await read_events(await post_launch(client, signer, launch_body(git_spec_of(repo), "git")))
    phases = [e["phase"] for e in events]
    assert phases[0] == "fetching" and phases[-1] == "ready", events
    assert any("Requirement already satisfied" in e["message"] for e in events if e["phase"] == "building")
    ready = events[-1]
    assert ready["url"].startswith("http://127.0.0.1:") and ready["url"].endswith("/")
    assert ready["image"].startswith("env-") and ready["launch_id"] == "launch-0001"
    assert ready["binder_request"].startswith("v2/git/") and ready["binder_persistent_request"].startswith("v2/git/")
    assert await _api_status(ready["url"], ready["token"]) == 200
    assert await _api_status(ready["url"], "wrong-token") == 403
    ad_resp = await client.get("/api/v1/status", headers=signer.headers("GET", "/api/v1/status"))
    assert ad_resp.status == 200
    path = "/api/v1/launches/launch-0001"
    assert (await client.delete(path, headers=signer.headers("DELETE", path))).status == 204
    assert await _api_status(ready["url"], ready["token"]) is None


async def test_second_launch_reuses_the_environment(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    repo = make_repo({"requirements.txt": "pyyaml\n"})
    backend = _backend(tmp_path)
    await backend.start()
    try:
        first, second = await asyncio.gather(
            _launch(backend, git_spec_of(repo), "launch-0001"), _launch(backend, git_spec_of(repo), "launch-0002")
        )
        third = await _launch(backend, git_spec_of(repo), "launch-0003")
        pip_lines = [e for e in first + second + third if "Requirement already satisfied" in e.message]
        assert len(pip_lines) == 1  # two concurrent launches built once; the third reused it
        assert any("Using cached environment" in e.message for e in third)
        assert first[-1].image == second[-1].image == third[-1].image
        assert await backend.images() == [f"git:file://{repo}"]
        assert (await backend.capacity()).used == 3
    finally:
        await backend.stop()
    assert (await backend.capacity()).used == 0
    assert await _api_status(first[-1].url, first[-1].token) is None
    assert not list((tmp_path / "state" / "local" / "servers").iterdir())


async def test_capacity_is_enforced_before_any_work(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    backend = _backend(tmp_path, capacity=1)
    await backend.start()
    try:
        assert (await _launch(backend, git_spec_of(repo), "launch-0001"))[-1].phase == "ready"
        second = await _launch(backend, git_spec_of(repo), "launch-0002")
        assert [(e.phase, e.status_code) for e in second] == [("failed", 429)]
        assert not (tmp_path / "state" / "local" / "servers" / "launch-0002").exists()
    finally:
        await backend.stop()


async def test_idle_servers_are_culled(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    clock = FakeClock(SystemClock().now())
    backend = _backend(tmp_path, clock=clock, cull_idle_seconds=60)
    await backend.start()
    try:
        ready = (await _launch(backend, git_spec_of(repo), "launch-0001"))[-1]
        assert await backend.cull_once() == []
        clock.advance(120)
        assert await backend.cull_once() == ["launch-0001"]
        assert await _api_status(ready.url, ready.token) is None
    finally:
        await backend.stop()


async def test_culling_runs_in_the_background(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    backend = _backend(tmp_path, cull_idle_seconds=0.5, cull_interval_seconds=0.25)
    await backend.start()
    try:
        await _launch(backend, git_spec_of(repo), "launch-0001")
        for _ in range(40):
            if not backend.pool.servers:
                break
            await asyncio.sleep(0.25)
        assert not backend.pool.servers
    finally:
        await backend.stop()


async def test_timeout_while_starting_leaves_nothing_running(
    aiohttp_client: Any, tmp_path: Path, make_repo: Callable[..., Path], broker_ring: Any, signer: Signer, monkeypatch: Any
) -> None:
    from fedmember.backends.servers import ServerPool

    started: list[Any] = []

    async def never_ready(self: ServerPool, server: Any) -> None:
        started.append(server)
        await asyncio.Event().wait()

    monkeypatch.setattr(ServerPool, "wait_ready", never_ready)
    repo = make_repo()
    config = member_config(tmp_path, launch_timeout=4)
    client = await aiohttp_client(make_app(config, broker_keys=broker_ring.public_set()))
    events = await read_events(await post_launch(client, signer, launch_body(git_spec_of(repo), "git")))
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 504
    assert started, "the server process was started before the deadline"
    assert started[0].proc.returncode is not None  # the half-started process was stopped
    assert not list((tmp_path / "state" / "local" / "servers").iterdir())


async def test_agent_shutdown_stops_servers(aiohttp_server: Any, tmp_path: Path, make_repo: Callable[..., Path], broker_ring: Any, signer: Signer) -> None:
    repo = make_repo()
    server = await aiohttp_server(make_app(member_config(tmp_path), broker_keys=broker_ring.public_set()))
    body = launch_body(git_spec_of(repo), "git")
    async with aiohttp.ClientSession() as session:
        resp = await session.post(server.make_url("/api/v1/launches"), data=body, headers=signer.headers("POST", "/api/v1/launches", body))
        ready = (await read_events(resp))[-1]
    assert await _api_status(ready["url"], ready["token"]) == 200
    await server.close()
    assert await _api_status(ready["url"], ready["token"]) is None


async def test_a_launch_still_preparing_when_the_backend_stops_starts_no_server(
    tmp_path: Path, make_repo: Callable[..., Path], monkeypatch: Any
) -> None:
    # The agent stops (its backend's servers are stopped) while a launch is still preparing its
    # environment: the launch must fail rather than start a server nobody would stop afterwards.
    from fedmember.backends import procs
    from fedmember.backends.servers import ServerPool

    spawned: list[Any] = []
    real_spawn, real_start = procs.spawn, ServerPool.start
    preparing, resume = asyncio.Event(), asyncio.Event()

    async def recording_spawn(*args: Any, **kwargs: Any) -> Any:
        proc = await real_spawn(*args, **kwargs)
        spawned.append(proc)
        return proc

    async def held_start(self: ServerPool, *args: Any, **kwargs: Any) -> Any:
        preparing.set()
        await resume.wait()
        return await real_start(self, *args, **kwargs)

    monkeypatch.setattr(ServerPool, "start", held_start)
    backend = _backend(tmp_path)
    await backend.start()
    launching = asyncio.create_task(_launch(backend, git_spec_of(make_repo()), "launch-0001"))
    try:
        await asyncio.wait_for(preparing.wait(), 120)
        monkeypatch.setattr(procs, "spawn", recording_spawn)  # from here on: the server's process
        await backend.stop()
        resume.set()
        events = await asyncio.wait_for(launching, 60)
    finally:
        resume.set()
        await backend.stop()
    assert events[-1].phase == "failed" and "shutting down" in (events[-1].message or "")
    assert not backend.pool.servers and all(p.returncode is not None for p in spawned)


async def test_datasets_are_linked_and_origins_allowed(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    notebook = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    repo = make_repo({"requirements.txt": "", "README.md": "# x\n", "n.ipynb": notebook})
    data = tmp_path / "zenodo-1"
    data.mkdir()
    (data / "table.csv").write_text("a,b\n")
    backend = _backend(tmp_path)
    backend.context.datasets = [__import__("fedproto.datasets", fromlist=["Dataset"]).Dataset(id="10.5281/zenodo.1", mount_path=str(data))]
    backend.context.cors_allow_origins = ["https://example.org"]
    await backend.start()
    try:
        events = await _launch(backend, git_spec_of(repo), "launch-0001", data=["https://doi.org/10.5281/zenodo.1", "10.1/elsewhere"])
        ready = events[-1]
        messages = "".join(e.message for e in events)
        assert "available read-only at data/10.5281_zenodo.1" in messages and "10.1/elsewhere is not stored" in messages
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"token {ready.token}", "Origin": "https://example.org"}
            async with session.get(ready.url + "api/contents", headers=headers) as resp:
                assert resp.headers.get("Access-Control-Allow-Origin") == "https://example.org"
                assert "data" in json.dumps(await resp.json())
            table = ready.url + "api/contents/data/10.5281_zenodo.1/table.csv"
            async with session.get(table, headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["content"] == "a,b\n"
            # Read-only for real: neither a new file nor an overwrite reaches the stored data.
            for name in ("new.csv", "table.csv"):
                put = ready.url + f"api/contents/data/10.5281_zenodo.1/{name}"
                async with session.put(put, headers=headers, json={"type": "file", "format": "text", "content": "x"}) as resp:
                    assert resp.status >= 400, await resp.text()
            # JupyterLab and the classic UI's paths answer; a urlpath naming neither says what exists.
            for path in ("lab", "lab/tree/n.ipynb", "tree", "tree/data", "notebooks/n.ipynb", "edit/README.md"):
                async with session.get(ready.url + path, headers=headers) as resp:
                    assert resp.status == 200, (path, resp.status)
            async with session.get(ready.url + "rstudio", headers=headers) as resp:
                page = await resp.text()
                assert resp.status == 404 and "urlpath" in page and 'href="/lab"' in page and 'href="/tree"' in page
        assert sorted(p.name for p in data.iterdir()) == ["table.csv"] and (data / "table.csv").read_text() == "a,b\n"
    finally:
        await backend.stop()


async def test_no_bwrap_stops_the_agent_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    backend = _backend(tmp_path)
    with pytest.raises(SandboxError, match="install Debian's `bubblewrap` package, or set `isolation = \"none\"`"):
        await backend.start()
    assert isinstance(SandboxError("x"), ConfigError)  # so `fedmember serve` prints it and exits 2


async def test_unknown_ref_and_missing_repo_fail_cleanly(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    backend = _backend(tmp_path)
    await backend.start()
    try:
        for spec in [git_spec_of(repo, "no-such-branch"), git_spec_of(tmp_path / "missing")]:
            events = await _launch(backend, spec, "launch-0001")
            assert events[-1].phase == "failed" and events[-1].status_code == 404, events
            assert events[-1].message.strip().endswith("Double check your URL and that your repo is public.")
        # git's first line names the cause, not its generic "...and the repository exists."
        assert "does not appear to be a git repository" in events[-1].message, events[-1].message
        assert (await backend.capacity()).building == 0
    finally:
        await backend.stop()


async def test_server_wrapper_runs_before_every_server_and_a_starting_server_counts_once(
    tmp_path: Path, make_repo: Callable[..., Path],
) -> None:
    """``server_wrapper`` (nice, prlimit, a site's launcher) must exec the server; one that fails breaks
    every launch while the agent's ad stays healthy (what canaries catch). A launch starting its
    server is one busy slot, not two."""
    mode = tmp_path / "mode"
    script = tmp_path / "wrap.sh"
    script.write_text('#!/bin/sh\nm=$(cat "$1"); shift\n[ "$m" = fail ] && exit 3\n[ "$m" = slow ] && sleep 2\nexec "$@"\n')
    backend = _backend(tmp_path, capacity=2, server_wrapper=["/bin/sh", str(script), str(mode)])
    await backend.start()
    try:
        mode.write_text("fail")
        events = await _launch(backend, git_spec_of(make_repo()), "launch-0001")
        assert events[-1].phase == "failed" and events[-1].status_code == 500
        assert "jupyter-server exited with status 3" in events[-1].message
        assert all(c.ok for c in await backend.health())

        mode.write_text("slow")
        task = asyncio.create_task(_launch(backend, git_spec_of(make_repo()), "launch-0002"))
        while "launch-0002" not in backend.pool.servers:
            await asyncio.sleep(0.05)
        cap = await backend.capacity()
        assert (cap.used, cap.building) == (1, 0)
        events = await task
        assert events[-1].phase == "ready", events
    finally:
        await backend.stop()


async def test_a_repo_that_does_not_build_is_final_not_failed_over(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    # pip runs with --no-index here, so a requirement it has to download cannot install: the repository's fault.
    repo = make_repo({"requirements.txt": "no-such-package-for-binder-federation==1.0\n"})
    backend = _backend(tmp_path)
    await backend.start()
    try:
        events = await _launch(backend, git_spec_of(repo), "launch-0001")
        end = events[-1]
        assert end.phase == "failed" and end.status_code == Failure.UNBUILDABLE, events
        assert "Building the environment failed" in end.message
        assert not fails_over(end.status_code, end.message)  # as a BinderHub member's build failure
        assert (await backend.capacity()).building == 0
    finally:
        await backend.stop()
