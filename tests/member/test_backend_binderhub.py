"""The binderhub backend against a local server replaying recorded BinderHub responses (delays scaled by 0.05)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from fedproto.launch import LaunchEvent, LaunchRequest
from fedmember.backends import backend_class
from fedmember.backends.binderhub import BinderHubBackend, BinderHubConfig
from fedmember.backends.binderhub_events import failure_status, parse_health, server_user, to_launch_event

from backend_fixtures import binderhub_recordings, binderhub_replay, build_on, collect, free_port, launch_on, make_context, preflight  # noqa: F401
from binderhub_replay import QUOTA_MESSAGE, TIME_SCALE, Recording, error_recording

REQUIREMENTS = "gh/binderhub-ci-repos/requirements/HEAD"
GIT_SPEC = "file%3A%2F%2F%2Fsrv%2Frepos%2Frequirements.git/HEAD"


def backend(tmp_path: Path, url: str, **config: Any) -> BinderHubBackend:
    cfg = BinderHubConfig(url=url, **config)
    return BinderHubBackend(cfg, make_context(tmp_path))


def request(provider: str, spec: str, launch_id: str = "launch-0001") -> LaunchRequest:
    return LaunchRequest(provider=provider, spec=spec, launch_id=launch_id)


def test_binderhub_backend_is_registered_by_kind() -> None:
    assert backend_class("binderhub") is BinderHubBackend
    assert set(BinderHubBackend.providers) == {"gh", "gl", "gist", "git", "zenodo", "figshare", "hydroshare", "dataverse", "ckan"}


async def test_binderhub_replayed_fakebuild_streams_every_event_to_ready(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    recording = replay.recordings["fakebuild"]
    replay.routes[REQUIREMENTS] = recording
    hub = backend(tmp_path, url)
    started = time.monotonic()
    events = await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD")))
    elapsed = time.monotonic() - started
    await hub.stop()

    assert [e.phase for e in events] == [
        "waiting", "Pending", "Running", "Succeed", "Building", "Building", "Building", "Building", "Building",
        "Building", "built", "launching", "launching", "launching", "launching", "ready",
    ]
    assert events[10].imageName and events[10].imageName.startswith("local-binder/binderhub-2dci-2drepos")
    assert events[-1].to_json() == replay.recordings["ready"]  # every ready field passed through unchanged
    assert replay.requests[0]["headers"]["Accept"] == "text/event-stream"
    assert elapsed >= recording.events[-1][0] * TIME_SCALE * 0.9  # the recorded timing was replayed


async def test_binderhub_replayed_prebuilt_image_launches_at_once(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    hub = backend(tmp_path, url)
    events = await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD")))
    await hub.stop()
    assert events[0].phase == "built" and events[0].message == "Found built image, launching...\n"
    assert events[-1].phase == "ready" and events[-1].url.endswith("-lrbicct8/") and events[-1].token


async def test_binderhub_replayed_git_provider_keeps_the_escaped_clone_url(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[f"git/{GIT_SPEC}"] = replay.recordings["git"]
    hub = backend(tmp_path, url)
    events = await collect(launch_on(hub, request("git", GIT_SPEC)))
    await hub.stop()
    assert replay.requests[0]["path"] == f"/build/git/{GIT_SPEC}"
    assert events[-1].phase == "ready"
    assert events[-1].binder_request == f"v2/git/{GIT_SPEC}"
    assert events[-1].repo_url == "file:///srv/repos/requirements.git"


@pytest.mark.parametrize(
    ("section", "provider", "spec", "status", "phases"),
    [
        pytest.param("gh repo that the stub 404s", "gh", "binderhub-ci-repos/does-not-exist/HEAD", 404, ["failed"], id="unknown-repo-404"),
        pytest.param("gh 'master' on a missing repo", "gh", "someone/missing-repo/master", 404, ["waiting", "failed"], id="head-retry-then-404"),
        pytest.param("git provider, unknown branch", "git", "file%3A%2F%2F%2Fsrv%2Frepos%2Frequirements.git/no-such-branch", 404, ["failed"], id="git-unknown-branch-404"),
    ],
)
async def test_binderhub_replayed_error_streams_fail_as_the_repos_fault(
    binderhub_replay: Any, tmp_path: Path, section: str, provider: str, spec: str, status: int, phases: list[str]
) -> None:
    replay, url = binderhub_replay
    replay.routes[f"{provider}/{spec}"] = error_recording(replay.recordings, section)
    hub = backend(tmp_path, url)
    events = await collect(launch_on(hub, request(provider, spec)))
    await hub.stop()
    assert [e.phase for e in events] == phases
    assert events[-1].status_code == status
    assert events[-1].message.startswith("Could not resolve ref")


async def test_binderhub_replayed_build_only_refusal_keeps_its_400(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = error_recording(replay.recordings, "build_only=true")
    hub = backend(tmp_path, url)
    events = await collect(build_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD")))
    await hub.stop()
    assert replay.requests[0]["path"].endswith("?build_only=true")
    assert events[-1].phase == "failed" and events[-1].status_code == 400


@pytest.mark.parametrize(
    ("provider", "spec"),
    [
        pytest.param("nosuch", "org/repo/HEAD", id="unknown-provider"),
        pytest.param("git", "%2Fsrv%2Frepo/HEAD", id="protocol-less-git-url"),
        pytest.param("gh", "../../health/HEAD", id="dotdot-owner"),
        pytest.param("gh", "org/repo/..%2F..%2Fhealth", id="escaped-dotdot-ref"),
        pytest.param("gh", "org/repo/HEAD?build_only=true", id="query-in-ref"),
        pytest.param("gh", "org/repo/HEAD#frag", id="fragment-in-ref"),
        pytest.param("git", "https%3A%2F%2Fexample.org%2F..%2F..%2Fhub/HEAD", id="git-url-dotdot"),
        pytest.param("gh", "-oProxyCommand=x/repo/HEAD", id="option-like-owner"),
    ],
)
async def test_binderhub_hostile_or_unknown_specs_fail_400_without_contacting_binderhub(
    binderhub_replay: Any, tmp_path: Path, provider: str, spec: str
) -> None:
    replay, url = binderhub_replay
    hub = backend(tmp_path, url)
    refusal = preflight(hub, request(provider, spec))  # the agent refuses it before the backend sees it
    await hub.stop()
    assert isinstance(refusal, LaunchEvent) and (refusal.phase, refusal.status_code) == ("failed", 400)
    assert replay.requests == []


async def test_binderhub_replayed_hold_open_stream_is_closed_by_us_after_ready(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes["gh/fake/repo/HEAD"] = replay.recordings["hold_open"]
    hub = backend(tmp_path, url)
    started = time.monotonic()
    events = await collect(launch_on(hub, request("gh", "fake/repo/HEAD")))
    elapsed = time.monotonic() - started
    await hub.stop()
    assert events[-1].phase == "ready" and events[-1].url.endswith("/user/fake-repo-grtlntwo/")
    assert elapsed < 5.31 * TIME_SCALE + 1.0  # not the 60 s BinderHub would hold the stream
    for _ in range(40):  # the replay notices the hang-up on its next keepalive write
        if replay.hung_up_after:
            break
        await asyncio.sleep(0.05)
    assert replay.hung_up_after and replay.hung_up_after[0] < 2.0


async def test_binderhub_replayed_rate_limit_fails_429_after_two_launches(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    hub = backend(tmp_path, url)
    results = [await collect(launch_on(hub, request("gh", f"org/ratelimited-{n}/HEAD", f"launch-000{n}"))) for n in (1, 2, 3)]
    await hub.stop()
    assert [r[-1].phase for r in results] == ["ready", "ready", "failed"]
    assert results[2][-1].status_code == 429 and "Rate limit exceeded" in results[2][-1].message
    assert results[0][-1].url.endswith("/user/org-ratelimited-1-gyabg6w9/")


@pytest.mark.parametrize(
    ("recording", "status"),
    [
        pytest.param(Recording(events=[(0.0, '{"phase": "failed", "message": "' + QUOTA_MESSAGE.strip() + '"}')]), 429, id="quota-message-429"),
        pytest.param(Recording(status=429, headers={"Content-Type": "text/html", "Retry-After": "60"}), 429, id="http-429"),
        pytest.param(Recording(status=500, headers={"Content-Type": "text/html"}), 502, id="http-500-is-502"),
        pytest.param(Recording(status=503, headers={"Content-Type": "text/html"}), 503, id="http-503"),
        pytest.param(Recording(status=200, headers={"Content-Type": "text/html"}), 502, id="not-an-event-stream"),
        pytest.param(Recording(events=[(0.0, '{"phase": "waiting", "message": "Waiting...\\n"}')]), 502, id="closed-before-ready"),
    ],
)
async def test_binderhub_site_trouble_fails_with_a_retryable_status(
    binderhub_replay: Any, tmp_path: Path, recording: Recording, status: int
) -> None:
    replay, url = binderhub_replay
    replay.routes["gh/org/trouble/HEAD"] = recording
    hub = backend(tmp_path, url)
    events = await collect(launch_on(hub, request("gh", "org/trouble/HEAD")))
    await hub.stop()
    assert events[-1].phase == "failed" and events[-1].status_code == status


async def test_binderhub_launch_timeout_ends_in_504(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["fakebuild"]  # ~0.63 s when replayed
    hub = backend(tmp_path, url, launch_timeout=0.2)
    events = await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD")))
    await hub.stop()
    assert events[-1].phase == "failed" and events[-1].status_code == 504


async def test_binderhub_connection_refused_fails_503_and_is_unhealthy(tmp_path: Path) -> None:
    hub = backend(tmp_path, f"http://127.0.0.1:{free_port()}", request_timeout=2)
    events = await collect(launch_on(hub, request("gh", "org/repo/HEAD")))
    checks = await hub.health()
    capacity = await hub.capacity()
    await hub.stop()
    assert events[-1].phase == "failed" and events[-1].status_code == 503
    assert checks[0].service == "BinderHub" and not checks[0].ok
    assert capacity.free == 0


async def test_binderhub_replayed_health_without_pod_quota_uses_max_servers(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    hub = backend(tmp_path, url, max_servers=7)
    await hub.start()
    await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD")))
    checks = await hub.health()
    capacity = await hub.capacity()
    await hub.stop()
    assert [(c.service, c.ok) for c in checks] == [("BinderHub", True), ("Docker registry", True), ("JupyterHub API", True)]
    assert (capacity.total, capacity.used, capacity.building) == (7, 1, 0)
    assert hub.versions() == {"binderhub": "0+unknown"}


async def test_binderhub_replayed_health_with_pod_quota_gives_capacity(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.with_pod_quota()
    hub = backend(tmp_path, url, max_servers=7)
    checks = await hub.health()
    capacity = await hub.capacity()
    await hub.stop()
    assert "Pod quota" in [c.service for c in checks]
    assert (capacity.total, capacity.used, capacity.building) == (100, 42, 0)


async def test_binderhub_full_pod_quota_is_informational_not_unhealthy(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.with_pod_quota(ok=False, user_pods=98, build_pods=2, total_pods=100)
    hub = backend(tmp_path, url)
    checks = {c.service: c for c in await hub.health()}
    capacity = await hub.capacity()
    await hub.stop()
    assert checks["Pod quota"].ok and checks["Pod quota"].detail["reported_ok"] is False
    assert capacity.free == 0


async def test_binderhub_unhealthy_503_health_marks_the_member_down(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.health_status = 503
    replay.health_body = {"ok": False, "checks": [{"service": "JupyterHub API", "ok": False}]}
    hub = backend(tmp_path, url)
    checks = await hub.health()
    await hub.stop()
    assert [(c.service, c.ok) for c in checks] == [("BinderHub", False), ("JupyterHub API", False)]


async def test_binderhub_stop_server_deletes_through_the_hub_api_when_configured(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    token_file = tmp_path / "hub-token"
    token_file.write_text(f"{replay.hub_token}\n")
    hub = backend(tmp_path, url, hub_api_url=f"{url}/hub/api", hub_token={"token_file": token_file})
    await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD", "launch-stop-1")))
    assert await hub.stop_server("launch-stop-1") is True
    assert await hub.stop_server("launch-stop-1") is False  # unknown now
    await hub.stop()
    assert replay.deleted_servers == ["binderhub-ci-repos-requirements-lrbicct8"]


async def test_binderhub_stop_server_without_hub_api_returns_false(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    hub = backend(tmp_path, url)
    await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD", "launch-stop-2")))
    assert await hub.stop_server("launch-stop-2") is False
    await hub.stop()


async def test_binderhub_api_token_is_sent_from_the_named_env_var(binderhub_replay: Any, tmp_path: Path, monkeypatch: Any) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    monkeypatch.setenv("TEST_BINDERHUB_TOKEN", "s3cret")
    hub = backend(tmp_path, url, api_token={"token_env": "TEST_BINDERHUB_TOKEN"})
    await collect(launch_on(hub, request("gh", "binderhub-ci-repos/requirements/HEAD")))
    await hub.stop()
    assert replay.requests[0]["headers"]["Authorization"] == "token s3cret"


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("Rate limit exceeded. Try again in 3600 seconds.\n", 429, 429),
        ("Missing Accept header: text/event-stream\n", 400, 400),
        ("Too many users running https://github.com/org/repo! Try again soon.\n", None, 429),
        (QUOTA_MESSAGE, None, 429),
        ("Could not resolve ref for gh:org/repo/HEAD. Double check your URL\n", None, 404),
        ("No provider found for prefix nosuch\n", None, 501),  # another member may serve it: fails over
        ("Failed to launch image local-binder/x:y\n", None, 503),
        ("Unsupported git url /srv/repo, protocol  not in http, file, ssh, https, git\n", None, 422),
        ("Build failed: requirements.txt does not install\n", None, 422),
    ],
    ids=["ratelimit-kept", "400-kept", "repo-quota", "pod-quota", "unresolved-ref", "no-provider", "launch-failure", "bad-url", "build-failure"],
)
def test_binderhub_failure_status_table(message: str, code: int | None, expected: int) -> None:
    assert failure_status(message, code) == expected


def test_binderhub_event_mapping_keeps_unknown_fields_and_survives_odd_ones() -> None:
    assert to_launch_event({"phase": "built", "imageName": "x", "new_field": 1}).to_json() == {"phase": "built", "message": "", "imageName": "x", "new_field": 1}
    odd = to_launch_event({"phase": "Frobnicating", "message": "hm\n"})
    assert odd.phase == "waiting" and odd.to_json()["binderhub_phase"] == "Frobnicating"
    assert to_launch_event({"phase": "launching", "message": "x\n", "url": 5}).to_json() == {"phase": "launching", "message": "x\n"}
    assert to_launch_event({"phase": "failed", "member": "forged"}).to_json() == {"phase": "failed", "message": "", "status_code": 422}


def test_binderhub_health_and_user_parsing() -> None:
    assert server_user("http://h/user/a-b%40c/") == "a-b@c"
    assert server_user("http://h/lab") is None
    assert not parse_health(502, "<html>").ok
