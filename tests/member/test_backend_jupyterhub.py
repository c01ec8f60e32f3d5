"""The jupyterhub backend against a real JupyterHub, configurable-http-proxy and jupyter-singleuser processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import RepoSpec
from fedmember.backends import backend_class
from fedmember.backends.jupyterhub import JupyterHubBackend, JupyterHubConfig

from fedproto.clock import SystemClock
from fedproto.keys import KeyDir
from fedmember.healthcheck import HealthService
from fedmember.statusad import StatusAdvertiser

from agentkit import member_config
from backend_fixtures import collect, free_port, jupyterhub_server, launch_on, make_context, preflight  # noqa: F401

pytestmark = pytest.mark.slow


def backend(tmp_path: Path, hub: dict[str, Any], **config: Any) -> JupyterHubBackend:
    # These tests are about the hub's mechanics: every repo is served with the default options,
    # and the repository check (which would need GitHub) is off. test_jupyterhub_serves_only_*
    # covers serving and checking.
    values = {"hub_api_url": hub["api_url"], "public_hub_url": hub["public_url"], "token": {"token_file": hub["token_file"]},
              "user_prefix": f"t{free_port()}-", "start_timeout": 60, "unmatched": "default", "check_repository": False}
    values.update(config)
    return JupyterHubBackend(JupyterHubConfig(**values), make_context(tmp_path))


def request(launch_id: str, spec: str = "org/repo/HEAD") -> LaunchRequest:
    return LaunchRequest(provider="gh", spec=spec, launch_id=launch_id)


async def test_jupyterhub_backend_is_registered_by_kind() -> None:
    assert backend_class("jupyterhub") is JupyterHubBackend


async def test_jupyterhub_real_hub_launch_to_ready_capacity_and_stop(jupyterhub_server: dict[str, Any], tmp_path: Path) -> None:
    hub = backend(tmp_path, jupyterhub_server, max_servers=2)
    checks = await hub.health()
    assert checks[0].ok and checks[0].detail["kind"] == "service"
    events = await collect(launch_on(hub, request("launch-hub-0001")))
    ready = events[-1]
    assert ready.phase == "ready", events
    assert [e.phase for e in events[:-1]] == ["launching"] * (len(events) - 1)
    assert ready.url.startswith(jupyterhub_server["public_url"] + "/user/") and ready.url.endswith("/")

    async with aiohttp.ClientSession() as http:  # through the proxy, with the token the browser gets
        async with http.get(f"{ready.url}api/status", headers={"Authorization": f"token {ready.token}"}) as resp:
            assert resp.status == 200, await resp.text()
            assert "started" in await resp.json()
        async with http.get(f"{ready.url}api/status", headers={"Authorization": "token wrong"}, allow_redirects=False) as resp:
            assert resp.status in (302, 403)

    capacity = await hub.capacity()
    assert (capacity.total, capacity.used, capacity.building) == (2, 1, 0)

    assert await hub.stop_server("launch-hub-0001") is True
    assert await hub.stop_server("launch-hub-0001") is False
    assert (await hub.capacity()).used == 0
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"token {jupyterhub_server['token']}"}
        name = ready.url.rstrip("/").rsplit("/", 1)[1]
        async with http.get(f"{jupyterhub_server['api_url']}/users/{name}", headers=headers) as resp:
            assert resp.status == 404  # the user is gone, not only its server
    assert hub.versions()["jupyterhub"]
    await hub.stop()


async def test_jupyterhub_real_hub_max_servers_fails_429_before_creating_anything(jupyterhub_server: dict[str, Any], tmp_path: Path) -> None:
    hub = backend(tmp_path, jupyterhub_server, max_servers=0)
    events = await collect(launch_on(hub, request("launch-hub-0002")))
    assert [(e.phase, e.status_code) for e in events] == [("failed", 429)]
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"token {jupyterhub_server['token']}"}
        async with http.get(f"{jupyterhub_server['api_url']}/users", headers=headers) as resp:
            names = [u["name"] for u in await resp.json()]
    assert not [n for n in names if n.startswith(hub.config.user_prefix)]
    await hub.stop()


async def test_jupyterhub_real_hub_stop_removes_every_server_it_started(jupyterhub_server: dict[str, Any], tmp_path: Path) -> None:
    hub = backend(tmp_path, jupyterhub_server, max_servers=3)
    events = await collect(launch_on(hub, request("launch-hub-0003")))
    assert events[-1].phase == "ready"
    await hub.stop()
    checker = backend(tmp_path, jupyterhub_server, user_prefix=hub.config.user_prefix)
    assert (await checker.capacity()).used == 0
    await checker.stop()


async def test_jupyterhub_unreachable_hub_fails_503_and_is_unhealthy(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x")
    hub = JupyterHubBackend(
        JupyterHubConfig(hub_api_url=f"http://127.0.0.1:{free_port()}/hub/api", token={"token_file": token_file}, request_timeout=2,
                         unmatched="default", check_repository=False),
        make_context(tmp_path, public_url="http://127.0.0.1:1/"),
    )
    events = await collect(launch_on(hub, request("launch-hub-0004")))
    checks = await hub.health()
    await hub.stop()
    assert [(e.phase, e.status_code) for e in events] == [("failed", 503)]
    assert not checks[0].ok


async def test_jupyterhub_hostile_spec_and_unmatched_repo_fail_before_the_hub(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x")
    config = JupyterHubConfig(
        hub_api_url=f"http://127.0.0.1:{free_port()}/hub/api", token={"token_file": token_file},
        rules=[{"match": r"^gh:org/allowed$", "user_options": {"image": "img:$ref"}}],
    )
    hub = JupyterHubBackend(config, make_context(tmp_path))
    bad = preflight(hub, request("launch-hub-0005", spec="../../etc/HEAD"))
    unmatched = await collect(launch_on(hub, request("launch-hub-0006", spec="org/other/HEAD")))
    await hub.stop()
    assert isinstance(bad, LaunchEvent) and bad.status_code == 400
    assert unmatched[-1].status_code == 501  # not served here: the broker tries another member
    repo = RepoSpec.parse("gh", "org/allowed/v1")
    assert hub._user_options(repo, request("launch-hub-0007")) == {"image": "img:v1"}


async def test_jupyterhub_missing_token_env_fails_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_HUB_TOKEN", raising=False)
    hub = JupyterHubBackend(
        JupyterHubConfig(hub_api_url="http://127.0.0.1:1/hub/api", token={"token_env": "NO_SUCH_HUB_TOKEN"}), make_context(tmp_path)
    )
    events = await collect(launch_on(hub, request("launch-hub-0008")))
    assert events[-1].status_code == 503 and "NO_SUCH_HUB_TOKEN" in events[-1].message
    assert not (await hub.health())[0].ok
    await hub.stop()


async def test_jupyterhub_real_hub_consumer_leaving_mid_launch_removes_the_user(jupyterhub_server: dict[str, Any], tmp_path: Path) -> None:
    hub = backend(tmp_path, jupyterhub_server, max_servers=3)
    events = launch_on(hub, request("launch-hub-0009"))
    async for event in events:
        if event.phase == "launching" and "Requesting" not in event.message:
            break  # the user exists and its server is spawning
    await events.aclose()
    assert (await hub.capacity()).used + (await hub.capacity()).building == 0
    assert await hub.stop_server("launch-hub-0009") is False
    await hub.stop()


def _git_repo(path: Path) -> Path:
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "HOME": str(path.parent), "PATH": "/usr/bin:/bin"}
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "one"], ["tag", "v1"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


async def test_jupyterhub_serves_only_what_it_is_configured_for_and_checks_the_repository(tmp_path: Path) -> None:
    """Refusals come before any hub call (the hub URL is closed): 501 fails over, 404 is the repo's."""
    token_file = tmp_path / "token"
    token_file.write_text("x")
    repo = _git_repo(tmp_path / "served")
    settings = dict(
        hub_api_url=f"http://127.0.0.1:{free_port()}/hub/api", token={"token_file": str(token_file)}, providers=["git"],
        rules=[{"match": r"^git:file://" + str(tmp_path) + "/", "user_options": {"image": "site/env:latest"}}],
        serves=["git:file://*"],  # wider than the rules on purpose: the 501 below stays the backstop
    )
    hub = JupyterHubBackend(JupyterHubConfig.model_validate(settings), make_context(tmp_path))
    # What the status ad advertises: the providers and the globs, so the broker skips it for other repos.
    member = member_config(tmp_path, backend={"kind": "jupyterhub", **settings})
    ad = await StatusAdvertiser(member, hub, HealthService(hub, SystemClock()), KeyDir(None, member.load_keys()),
                                SystemClock()).current()
    assert ad.providers == ["git"] and ad.serves == ["git:file://*"]

    async def launch(provider: str, spec: str) -> list[LaunchEvent]:
        request = LaunchRequest(provider=provider, spec=spec, launch_id=f"launch-hub-{free_port()}")
        refused = preflight(hub, request)  # the agent's own check, before the backend sees it
        return [refused] if isinstance(refused, LaunchEvent) else await collect(hub.launch(request, refused))

    other = _git_repo(tmp_path.parent / f"{tmp_path.name}-other")
    outcomes = {
        "unmatched": await launch("git", f"file://{other}/HEAD"),
        "provider": await launch("gh", "org/repo/HEAD"),
        "missing repo": await launch("git", f"file://{tmp_path}/nope/HEAD"),
        "missing ref": await launch("git", f"file://{repo}/no-such-branch"),
        "served": await launch("git", f"file://{repo}/v1"),
    }
    await hub.stop()
    codes = {k: (v[-1].phase, v[-1].status_code) for k, v in outcomes.items()}
    # Not served here (no rule, or a provider it does not advertise): 501, and the broker fails over.
    assert codes["unmatched"] == ("failed", 501) and codes["provider"] == ("failed", 501)
    assert codes["missing repo"] == ("failed", 404) and codes["missing ref"] == ("failed", 404)
    assert "Double check your URL" in outcomes["missing ref"][-1].message
    # The served repo passed every check and reached the hub, which is not there: 503, not 404.
    assert codes["served"] == ("failed", 503)


def test_jupyterhub_settings_are_toml_expressible() -> None:
    import tomllib

    text = 'kind = "jupyterhub"\nhub_api_url = "http://hub:8081/hub/api"\ntoken = {token_env = "T"}\n' \
           'unmatched = "refuse"\nproviders = ["gh"]\n[[rules]]\nmatch = "^gh:org/"\nuser_options = {profile = "py"}\n'
    config = JupyterHubConfig.model_validate(tomllib.loads(text))
    assert config.unmatched == "refuse" and config.rules[0].user_options == {"profile": "py"}
    assert JupyterHubConfig.model_validate(tomllib.loads(text.replace('"refuse"', '"default"'))).unmatched == "default"
    assert config.serves is None  # unset: the ad claims every repo of its providers, as before
    narrowed = text.replace('providers = ["gh"]', 'providers = ["gh"]\nserves = ["gh:org/*"]')
    assert JupyterHubConfig.model_validate(tomllib.loads(narrowed)).serves == ["gh:org/*"]
    for bad in (narrowed.replace('"refuse"', '"default"'), narrowed.replace('"gh:org/*"', '"gh:(a+)+[x]"')):
        with pytest.raises(ValueError):  # a claim the rules would not keep; a regex where a glob goes
            JupyterHubConfig.model_validate(tomllib.loads(bad))


async def test_jupyterhub_real_hub_agent_restart_keeps_ready_servers_and_reaps_orphans(jupyterhub_server: dict[str, Any], tmp_path: Path) -> None:
    first = backend(tmp_path, jupyterhub_server, max_servers=3)
    ready = (await collect(launch_on(first, request("launch-hub-restart"))))[-1]
    assert ready.phase == "ready"
    await first.detach()  # SIGTERM of the agent: the user's server stays

    headers = {"Authorization": f"token {jupyterhub_server['token']}"}
    orphan = f"{first.config.user_prefix}orphan"  # what an agent killed mid-launch leaves: no launch token
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{jupyterhub_server['api_url']}/users/{orphan}", headers=headers) as resp:
            assert resp.status == 201
        async with http.post(f"{jupyterhub_server['api_url']}/users/{orphan}/server", headers=headers, json={}) as resp:
            assert resp.status in (201, 202)

    second = backend(tmp_path, jupyterhub_server, max_servers=3, user_prefix=first.config.user_prefix)
    assert await second.adopt() == ["launch-hub-restart"]
    assert (await second.capacity()).used == 1  # the adopted server counts; the orphan is gone
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ready.url}api/status", headers={"Authorization": f"token {ready.token}"}) as resp:
            assert resp.status == 200  # the user's session survived the restart
        async with http.get(f"{jupyterhub_server['api_url']}/users/{orphan}", headers=headers) as resp:
            assert resp.status == 404
    assert await second.stop_server("launch-hub-restart") is True
    assert (await second.capacity()).used == 0
    await second.stop()
