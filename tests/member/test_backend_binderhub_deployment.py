"""The binderhub backend as a real deployment needs it: the user's address reaches BinderHub, the providers it
advertises are the ones BinderHub serves, a hung BinderHub is named as such in time, and a restart leaves users' servers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from fedproto.launch import LaunchRequest
from fedmember.backends.binderhub import BinderHubBackend, BinderHubConfig
from fedbroker.routing.health import unhealthy_reason
from fedproto.status import Capacity, StatusAd

from backend_fixtures import binderhub_recordings, binderhub_replay, collect, launch_on, make_context, preflight  # noqa: F401

REQUIREMENTS = "gh/binderhub-ci-repos/requirements/HEAD"


def backend(tmp_path: Path, url: str, **config: Any) -> BinderHubBackend:
    return BinderHubBackend(BinderHubConfig(url=url, **config), make_context(tmp_path))


async def test_the_users_address_reaches_binderhub_not_the_agents(binderhub_replay: Any, tmp_path: Path) -> None:
    """BinderHub's per-IP limit and logs see each user (X-Forwarded-For / X-Real-IP), as they would without the federation."""
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    hub = backend(tmp_path, url)
    for n, ip in enumerate(["203.0.113.9", "2001:db8::7"]):
        request = LaunchRequest(provider="gh", spec="binderhub-ci-repos/requirements/HEAD", launch_id=f"launch-000{n}", client_ip=ip)
        events = await collect(launch_on(hub, request))
        assert events[-1].phase == "ready"
        headers = replay.requests[n]["headers"]
        assert headers["X-Forwarded-For"] == ip and headers["X-Real-IP"] == ip
    await hub.stop()


async def test_a_rate_limited_launch_is_a_refusal_the_broker_fails_over(binderhub_replay: Any, tmp_path: Path) -> None:
    """The recorded per-IP limit: the third launch gets 429, which the broker treats as busy, not broken."""
    replay, url = binderhub_replay
    for n, rec in enumerate(replay.recordings["ratelimit"], start=1):
        replay.routes[f"gh/org/ratelimited-{n}/HEAD"] = rec
    hub = backend(tmp_path, url)
    ends = [(await collect(launch_on(hub, LaunchRequest(provider="gh", spec=f"org/ratelimited-{n}/HEAD",
                                                           launch_id=f"launch-000{n}", client_ip="198.51.100.1"))))[-1]
            for n in (1, 2, 3)]
    await hub.stop()
    assert [e.phase for e in ends] == ["ready", "ready", "failed"] and ends[-1].status_code == 429


async def _served(aiohttp_server: Any, config: dict | None, health_delay: float = 0.0) -> str:
    app = web.Application()

    async def cfg(request: web.Request) -> web.Response:
        return web.json_response(config) if config is not None else web.Response(status=404)

    async def health(request: web.Request) -> web.Response:
        await asyncio.sleep(health_delay)
        return web.json_response({"ok": True, "checks": []})

    app.router.add_get("/_config", cfg)
    app.router.add_get("/health", health)
    async def versions(request: web.Request) -> web.Response:
        return web.json_response({"binderhub": "1.0"})

    app.router.add_get("/versions", versions)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/"))


async def test_the_providers_advertised_are_those_binderhub_serves(aiohttp_server: Any, tmp_path: Path) -> None:
    url = await _served(aiohttp_server, {"gh": {"text": "GitHub"}, "git": {"text": "Git"}, "bogus": {}})
    discovered = backend(tmp_path, url)
    await discovered.start()
    configured = backend(tmp_path, url, providers=["gl"])
    await configured.start()
    unknown = backend(tmp_path, await _served(aiohttp_server, None))
    await unknown.start()
    try:
        assert discovered.providers == ("gh", "git")
        assert configured.providers == ("gl",)  # configuration wins over discovery
        assert "zenodo" in unknown.providers  # nothing to go by: every provider, BinderHub's default
        # A launch for a provider it does not serve fails over (501), rather than a final 404.
        refused = preflight(discovered, LaunchRequest(provider="zenodo", spec="10.5281/zenodo.1", launch_id="launch-0001"))
        assert refused.phase == "failed" and refused.status_code == 501  # type: ignore[union-attr]
    finally:
        for hub in (discovered, configured, unknown):
            await hub.stop()


async def test_a_hung_binderhub_is_reported_in_time_and_by_name(aiohttp_server: Any, tmp_path: Path) -> None:
    url = await _served(aiohttp_server, None, health_delay=30)
    hub = backend(tmp_path, url, request_timeout=0.3)
    started = asyncio.get_running_loop().time()
    checks = await hub.health()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert BinderHubConfig(url=url).request_timeout < 5.0  # the default stays below the broker's poll timeout
    ad = StatusAd(member_id="m", instance_id="i", generation=1, issued_at=0, expires_at=60, healthy=False, checks=checks,
                  capacity=Capacity(total=0, used=0), backend="binderhub")
    reason = unhealthy_reason(ad)
    assert reason.startswith(f"BinderHub at {url.rstrip('/')} did not answer within 0.3 s"), reason
    await hub.stop()


async def test_an_agent_restart_leaves_users_servers_running(binderhub_replay: Any, tmp_path: Path) -> None:
    replay, url = binderhub_replay
    replay.routes[REQUIREMENTS] = replay.recordings["prebuilt"]
    token_file = tmp_path / "hub-token"
    token_file.write_text(replay.hub_token)
    hub = backend(tmp_path, url, hub_api_url=f"{url}/hub/api", hub_token={"token_file": token_file})
    events = await collect(launch_on(hub, LaunchRequest(provider="gh", spec="binderhub-ci-repos/requirements/HEAD",
                                                        launch_id="launch-0001")))
    assert events[-1].phase == "ready"
    await hub.detach()  # SIGTERM from an upgrade: not stop()
    assert replay.deleted_servers == []
    # stop() (an operator taking the member down for good) still ends them.
    hub = backend(tmp_path, url, hub_api_url=f"{url}/hub/api", hub_token={"token_file": token_file})
    await collect(launch_on(hub, LaunchRequest(provider="gh", spec="binderhub-ci-repos/requirements/HEAD", launch_id="launch-0002")))
    await hub.stop()
    assert len(replay.deleted_servers) == 1


def test_browsers_may_be_sent_to_binderhub_unless_it_needs_a_token(tmp_path: Path) -> None:
    assert backend(tmp_path, "https://binder.example.org/").browser_launch_url() == "https://binder.example.org"
    assert backend(tmp_path, "https://binder.example.org/", api_token={"token_env": "SOME_BINDERHUB_TOKEN"}).browser_launch_url() is None
