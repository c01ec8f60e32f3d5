"""The fast routing path gives the same decisions as the plain one.

A memo reused across calls, a health table's cached views and ``detail`` (real launches list
only their best candidates) must never change who is chosen or in which order: the cost of
each member is the same number, bit for bit, as its explained parts add up to.
"""

from __future__ import annotations

import random

import pytest

from fedproto.clock import FakeClock
from fedproto.datasets import Dataset
from fedproto.repospec import RepoSpec
from fedproto.status import Capacity, ImageSummary, StatusAd

from fedbroker.config import HealthSettings, RoutingSettings
from fedbroker.routing.health import HealthTable
from fedbroker.routing.rank import RouteRequest, RoutingMemo, rank

from test_routing import M, build

SETTINGS = RoutingSettings()


def _fleet(seed: int, n: int = 60) -> list[M]:
    rng = random.Random(seed)
    return [
        M(f"m{i}", weight=rng.choice((0.5, 1, 1, 2)), used=rng.randrange(10), region=rng.choice(("eu", "us", None)),
          images=[f"gh:org/r{k}" for k in rng.sample(range(20), 5)], canary_seconds=rng.choice((None, 5.0, 30.0)),
          datasets=[Dataset(id=f"10.1/d{rng.randrange(10)}", size_bytes=rng.randrange(1, 10**10)),
                    Dataset(id=f"s3://b{i % 4}/", prefix=True)],
          poll=rng.choice(("ok", "ok", "ok", "err-once", "unhealthy")), launch_failures=rng.randrange(3))
        for i in range(n)
    ]


def _requests(seed: int) -> list[RouteRequest]:
    rng = random.Random(seed)
    return [RouteRequest(repo=RepoSpec.parse("gh", f"org/r{rng.randrange(25)}/HEAD"),
                         data=rng.choice(((), ("10.1/d3",), ("s3://b1/x",), ("10.1/d1", "s3://b2/y"))),
                         client_region=rng.choice((None, "eu", "US")))
            for _ in range(15)]


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"fleet-{s}")
def test_memo_and_detail_do_not_change_decisions(seed: int) -> None:
    snapshot, views = build(_fleet(seed))
    memo = RoutingMemo()
    for req in _requests(seed):
        plain = rank(snapshot, views, req, SETTINGS, decision_id="d")  # type: ignore[arg-type]
        memoed = rank(snapshot, views, req, SETTINGS, decision_id="d", memo=memo)  # type: ignore[arg-type]
        short = rank(snapshot, views, req, SETTINGS, decision_id="d", memo=memo, detail=3)  # type: ignore[arg-type]
        assert memoed == plain
        assert [c.model_dump() for c in short.candidates] == [c.model_dump() for c in plain.candidates[:3]
                                                              if c.routable] or not plain.chosen
        for c in plain.candidates:
            if c.routable:
                assert c.cost == round(sum(c.parts.values()), 3), c


def test_detail_lists_the_unroutable_when_nothing_is_routable() -> None:
    snapshot, views = build([M("a", poll="unhealthy"), M("b", poll="never")])
    req = RouteRequest(repo=RepoSpec.parse("gh", "org/r/HEAD"))
    short = rank(snapshot, views, req, SETTINGS, decision_id="d", detail=3)  # type: ignore[arg-type]
    assert short.chosen is None
    assert [c.member_id for c in short.candidates] == ["a", "b"]


def _ad(member_id: str, clock: FakeClock, *, ttl: float = 60.0, healthy: bool = True) -> StatusAd:
    now = clock.now()
    return StatusAd(member_id=member_id, instance_id="i", generation=1, issued_at=now, expires_at=now + ttl,
                    healthy=healthy, capacity=Capacity(total=10, used=0), backend="t", images=ImageSummary())


def test_cached_views_follow_every_change_and_expiry() -> None:
    """The health table hands out the same mapping until a member records something or an ad expires."""
    clock = FakeClock()
    table = HealthTable(HealthSettings(unhealthy_after=1), clock, random.Random(0))
    table.sync(["a", "b"])
    table.member("a").record_poll(_ad("a", clock, ttl=30))
    table.member("b").record_poll(_ad("b", clock, ttl=90))
    first = table.views()
    assert table.views() is first
    table.member("a").record_poll(None, "connection refused")
    second = table.views()
    assert second is not first and second["a"].state.value == "unhealthy" and first["a"].state.value == "healthy"
    clock.advance(31)
    assert table.views()["a"].ad_expired and not table.views()["b"].ad_expired
    clock.advance(60)
    assert table.views()["b"].ad_expired


def test_a_member_that_fails_is_never_chosen_from_a_stale_memo() -> None:
    """Never route to a member known to be down, however warm the caches are."""
    clock = FakeClock()
    table = HealthTable(HealthSettings(unhealthy_after=1), clock, random.Random(0))
    snapshot, _ = build([M("a"), M("b")], clock)
    table.sync(snapshot.members)  # type: ignore[attr-defined]
    for m in ("a", "b"):
        table.member(m).record_poll(_ad(m, clock))
    memo, req = RoutingMemo(), RouteRequest(repo=RepoSpec.parse("gh", "org/r/HEAD"))
    chosen = rank(snapshot, table.views(), req, SETTINGS, decision_id="d", memo=memo, detail=3).chosen  # type: ignore[arg-type]
    assert chosen is not None
    table.member(chosen).record_poll(None, "connection refused")
    after = rank(snapshot, table.views(), req, SETTINGS, decision_id="d", memo=memo, detail=3)  # type: ignore[arg-type]
    assert after.routable_ids() == [{"a": "b", "b": "a"}[chosen]]
    assert memo.why_not(chosen, "gh") is not None
