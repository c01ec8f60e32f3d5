"""The canary runner against member doubles over the signed API, with a fake clock: launch, check, stop,
and what results do to routing (ejection, re-admission, time-to-ready, the reserved slot)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from fedproto.clock import FakeClock
from fedproto.status import Capacity

from fedbroker.appkeys import HEALTH, MEMBER_CLIENT, METRICS, SNAPSHOT
from fedbroker.launch.canary import CanaryRunner, canary_repo
from fedbroker.config import BrokerConfig, CanarySettings, ConfigError
from brokerkit import broker_app, feed_health, new_keyring, snapshot_of
from member_double import MemberDouble

CANARY = CanarySettings(repo="gh/org/canary/HEAD", interval=60, retry_interval=10, jitter=0.1, eject_after=2,
                        timeout=5, check_timeout=2)


class Fed:
    """A broker app over member doubles, and a canary runner driven by hand."""

    def __init__(self, client: TestClient, doubles: dict[str, MemberDouble], clock: FakeClock,
                 http: aiohttp.ClientSession, settings: CanarySettings = CANARY) -> None:
        self.client, self.doubles, self.clock = client, doubles, clock
        app = client.app
        assert app is not None
        self.app = app
        repo = canary_repo(settings, dev=True)
        assert repo is not None
        self.runner = CanaryRunner(settings, repo, app[SNAPSHOT], app[HEALTH], app[MEMBER_CLIENT], app[METRICS], clock, http)
        self.runner.sync()  # every member's first canary is scheduled from here

    async def round(self, seconds: float = 61.0) -> int:
        """Advance past everyone's next canary, poll (as the poller would) and run the due canaries."""
        self.clock.advance(seconds)
        feed_health(self.app, self.doubles.values())
        return await self.runner.run_due()

    def view(self, member_id: str) -> Any:
        return self.app[HEALTH].views()[member_id]

    async def route(self) -> dict[str, Any]:
        resp = await self.client.get("/api/v1/route", params={"provider": "gh", "spec": "org/repo/HEAD"})
        assert resp.status == 200
        return dict(await resp.json())


Start = Callable[..., Awaitable[Fed]]


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def fed(aiohttp_server: Any, aiohttp_client: Any, http: aiohttp.ClientSession) -> Start:
    async def start(*ids: str, canary_off: tuple[str, ...] = (), settings: CanarySettings = CANARY,
                    **double: Any) -> Fed:
        clock, keyring = FakeClock(), new_keyring()
        doubles, entries = {}, []
        for member_id in ids:
            d = MemberDouble(member_id, keyring.public_set(), clock, capacity=Capacity(total=4, used=0), **double)
            server = await aiohttp_server(d.app())
            d.url = d.public_url = str(server.make_url("/"))
            doubles[member_id] = d
            entries.append(d.entry(canary=member_id not in canary_off))
        app = broker_app(BrokerConfig(dev=True, canary=CANARY), clock, keyring, snapshot_of(entries))
        feed_health(app, doubles.values())
        return Fed(await aiohttp_client(app), doubles, clock, http, settings)

    return start


async def test_a_canary_launches_checks_the_server_with_its_token_and_stops_it(fed: Start) -> None:
    f = await fed("a", emit_built=True, launch_seconds=1.5)
    assert await f.round() == 1
    d = f.doubles["a"]
    assert [(r.provider, r.spec) for r in d.launches] == [("gh", "org/canary/HEAD")]
    assert d.deleted == [d.launches[0].launch_id] and d.launches[0].launch_id.startswith("canary-")
    last = f.view("a").canary.last
    assert (last.ok, last.outcome, last.reason) == (True, "ok", None)
    assert (last.time_to_ready, last.build_seconds, last.launch_seconds) == (1.5, 0.0, 1.5)
    metrics = (await (await f.client.get("/metrics")).text())
    assert 'fedbroker_canaries_total{member="a",outcome="ok"} 1.0' in metrics
    assert 'fedbroker_canaries_total{member="a",outcome="check_failed"} 0.0' in metrics  # enums up front
    assert 'fedbroker_canary_time_to_ready_seconds_count{member="a",part="launch"} 1.0' in metrics
    # A canary is not a user launch: no user launch metric or SLO sample.
    assert 'fedbroker_launches_total{member="a",outcome="ready"}' not in metrics
    summary = await (await f.client.get("/api/v1/federation")).json()
    member = summary["members"][0]
    assert member["canary"]["ok"] is True and member["canary"]["time_to_ready"] == 1.5
    assert set(member["canary"]) >= {"ok", "at", "time_to_ready", "reason"}
    assert member["canaries"] == "on" and len(member["canary_history"]) == 1
    assert member["slo"][0] == {"window": "1h", "launches": 0, "ready": 0, "ready_share": None,
                                "p50_time_to_ready": None, "p95_time_to_ready": None}


async def test_failing_canaries_eject_the_member_and_a_passing_one_re_admits_it(fed: Start) -> None:
    f = await fed("a", "b")
    f.doubles["a"].behaviour = "failed503"
    await f.round()
    assert f.view("a").canary.failures == 1
    assert (await f.route())["candidates"][0]["routable"]  # one failure is not enough
    await f.round(11)  # the retry comes sooner than the interval
    decision = await f.route()
    a = next(c for c in decision["candidates"] if c["member_id"] == "a")
    assert not a["routable"] and a["reason"].startswith("canary failed 2 times in a row: Site trouble.")
    assert decision["candidates"][0]["member_id"] == "b"
    metrics = await (await f.client.get("/metrics")).text()
    assert 'fedbroker_member_health{member="a",state="ejected"} 1.0' in metrics
    f.doubles["a"].behaviour = "ok"
    await f.round(11)
    assert next(c for c in (await f.route())["candidates"] if c["member_id"] == "a")["routable"]
    assert [r.ok for r in f.view("a").canary.history] == [False, False, True]
    assert f.doubles["a"].deleted == [r.launch_id for r in f.doubles["a"].launches]  # failed ones stopped too


@pytest.mark.parametrize(("setup", "outcome", "reason"), [
    pytest.param({"server_ok": False}, "check_failed", "the server answered HTTP 403 with its token", id="token-refused"),
    pytest.param({"ready_url": "http://169.254.169.254/latest/"}, "check_failed",
                 "ready url is not on the member's public host 127.0.0.1", id="member-points-elsewhere"),
    pytest.param({"behaviour": "http500"}, "launch_failed", "launch answered HTTP 500: backend exploded", id="http-500"),
    pytest.param({"behaviour": "hang"}, "timeout", "not ready within 5 s", id="hangs"),
])
async def test_what_a_failed_canary_says(fed: Start, setup: dict[str, Any], outcome: str, reason: str) -> None:
    f = await fed("a")
    for key, value in setup.items():
        setattr(f.doubles["a"], key, value)
    if setup.get("behaviour") == "hang":
        f.runner._s = CANARY.model_copy(update={"timeout": 0.3})  # real seconds here: the stream waits
        reason = "not ready within 0.3 s"
    await f.round()
    last = f.view("a").canary.last
    assert (last.ok, last.outcome, last.reason) == (False, outcome, reason)
    assert f.doubles["a"].deleted == [f.doubles["a"].launches[0].launch_id]


async def test_a_full_member_skips_the_canary_without_blame(fed: Start) -> None:
    f = await fed("a", behaviour="failed429")
    await f.round()
    assert f.view("a").canary.history == ()
    assert 'fedbroker_canaries_total{member="a",outcome="skipped"} 1.0' in await (await f.client.get("/metrics")).text()


async def test_measured_time_to_ready_changes_the_dry_run(fed: Start) -> None:
    # One canary at a time: each double moves the shared fake clock by its launch time.
    f = await fed("fast", "slow", settings=CANARY.model_copy(update={"concurrency": 1}))
    before = await f.route()
    assert all(c["parts"]["ready_time"] == 0.0 for c in before["candidates"])
    f.doubles["fast"].launch_seconds, f.doubles["slow"].launch_seconds = 2.0, 40.0
    f.doubles["fast"].images = f.doubles["slow"].images = ["gh:org/repo"]
    await f.round()
    decision = await f.route()
    parts = {c["member_id"]: c["parts"]["ready_time"] for c in decision["candidates"]}
    assert parts == {"fast": 2.0, "slow": 40.0}
    assert decision["candidates"][0]["member_id"] == "fast"
    assert "mostly ready_time (+38.0 s)" in decision["candidates"][1]["reason"]


async def test_the_canary_slot_is_reserved_and_its_server_is_not_user_load(fed: Start) -> None:
    f = await fed("a", "off", canary_off=("off",))
    await f.round()
    view = f.view("a")
    assert view.canary.reserved and view.user_total == 3 and f.view("off").user_total == 4
    assert f.view("off").canary.history == ()  # turned off in the registry: never launched there
    assert f.doubles["off"].launches == []
    # An ad issued while a canary ran counts its server; users do not see it as load.
    d = f.doubles["a"]
    f.app[HEALTH].member("a").canary_started()
    d.capacity = Capacity(total=4, used=1)
    feed_health(f.app, [d])
    view = f.view("a")
    assert view.canary.busy and view.occupied == 0 and view.load == 0.0 and view.free == 3
    # Users fill the three user slots: the member is full for them, the canary's slot stays free.
    d.capacity = Capacity(total=4, used=3)
    f.app[HEALTH].member("a").canary_stopped()
    f.clock.advance(1)
    feed_health(f.app, [d])
    a = next(c for c in (await f.route())["candidates"] if c["member_id"] == "a")
    assert not a["routable"] and a["reason"].startswith("no capacity")


async def test_turning_canaries_off_frees_the_slot_and_lifts_an_ejection(fed: Start) -> None:
    f = await fed("a", behaviour="failed503")
    await f.round()
    await f.round(11)
    assert f.view("a").canary.reserved and f.view("a").canary.ejected
    entry = f.app[SNAPSHOT].current.members["a"]
    off = entry.__class__(record=entry.record.model_copy(update={"canary": False}), keys=entry.keys)
    f.app[SNAPSHOT].replace(snapshot_of([off], revision=2))
    assert f.runner.sync() == []
    assert not f.view("a").canary.reserved and f.view("a").user_total == 4
    assert not f.view("a").canary.ejected and len(f.view("a").canary.history) == 2  # no canary would re-admit it
    assert next(c for c in (await f.route())["candidates"] if c["member_id"] == "a")["routable"]


def test_a_bad_canary_repo_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="canary.repo 'nope/x'"):
        canary_repo(CanarySettings(repo="nope/x"), dev=True)
    with pytest.raises(ConfigError, match="canary.repo"):
        canary_repo(CanarySettings(repo="git/file%3A%2F%2F%2Ftmp%2Fr/main"), dev=False)
    assert canary_repo(CanarySettings(), dev=False) is None
