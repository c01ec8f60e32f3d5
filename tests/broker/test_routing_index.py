"""The routing index decides as ``rank`` does, while updating one member at a time.

Each test drives a health table through polls, launches (provisional load), outcomes and
registry changes, and after every step compares the index's decision with ``rank``'s over the
same snapshot and views, candidate by candidate (member, order and cost, bit for bit).
"""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

from fedproto.clock import FakeClock
from fedproto.datasets import Dataset
from fedproto.location import Location
from fedproto.member import MemberState
from fedproto.repospec import RepoSpec
from fedproto.status import Capacity, ImageSummary, StatusAd, image_hash

from fedbroker.config import HealthSettings, RoutingSettings
from fedbroker.routing.health import HealthTable
from fedbroker.registry.snapshot import MemberEntry, RegistrySnapshot
from fedbroker.routing.index import RoutingIndex
from fedbroker.routing.pending import PendingImages
from fedbroker.routing.rank import RouteRequest, rank

from test_routing import M, build

DETAIL = 5


def _members(rng: random.Random, n: int) -> list[M]:
    return [
        M(f"m{i:03d}", weight=rng.choice((0.5, 1, 1, 2)), used=rng.randrange(10), region=rng.choice(("eu", "us", None)),
          images=[f"gh:org/r{k}" for k in rng.sample(range(40), rng.choice((0, 3, 8)))],
          ready_seconds=rng.choice((None, 5.0, 30.0)),
          datasets=[Dataset(id=f"10.1/d{rng.randrange(30)}", size_bytes=rng.randrange(1, 10**10)),
                    Dataset(id=f"s3://b{i % 7}/", prefix=True)],
          providers=rng.choice(([], [], ["gh", "gl"], ["gl"])),
          poll=rng.choice(("ok",) * 6 + ("err-once", "unhealthy", "never")), launch_failures=rng.randrange(3))
        for i in range(n)
    ]


def _request(rng: random.Random) -> RouteRequest:
    return RouteRequest(
        repo=RepoSpec.parse("gh", f"org/r{rng.randrange(50)}/HEAD"),
        data=rng.choice(((),) * 4 + (("10.1/d3",), ("s3://b1/x",), ("10.1/d1", "s3://b2/y"), ("10.9/none",))),
        client_region=rng.choice((None, None, "eu", "US")),
        client_location=rng.choice((None,) * 5 + (Location(lat=48.0, lon=2.0),)),
    )


def _same(index: RoutingIndex, snapshot: RegistrySnapshot, views: object, req: RouteRequest,
          settings: RoutingSettings, pending: frozenset[str] = frozenset()) -> str | None:
    expected = rank(snapshot, views, req, settings, decision_id="d", detail=DETAIL, pending=pending)  # type: ignore[arg-type]
    got = index.decide(req, "d", DETAIL, pending)
    want = [(c.member_id, c.cost) for c in expected.candidates if c.routable]
    assert [(c.member_id, c.cost) for c in got.candidates if c.routable] == want, req
    if not want:  # nothing routable: both list every member with why
        assert [(c.member_id, c.reason) for c in got.candidates] == [(c.member_id, c.reason) for c in expected.candidates]
    return got.chosen


def _ad(member_id: str, now: float, rng: random.Random) -> StatusAd:
    total = rng.choice((3, 10, 40))
    images = [image_hash(f"gh:org/r{k}") for k in rng.sample(range(40), rng.choice((0, 2, 6, 20)))]
    return StatusAd(
        member_id=member_id, instance_id="t", generation=1, issued_at=now, expires_at=now + rng.choice((20.0, 600.0, 600.0)),
        healthy=rng.random() > 0.05, capacity=Capacity(total=total, used=rng.randrange(total + 1), building=0),
        backend="t", providers=rng.choice(([], [], ["gh", "gl"], [], [], ["gl"])),
        location=Location(region=rng.choice(("eu", "us", None)), lat=rng.choice((None, 40.0)), lon=2.0),
        images=ImageSummary(hashes=images, total=len(images)),
        datasets=[Dataset(id=f"10.1/d{rng.randrange(30)}", size_bytes=rng.randrange(1, 10**10))],
        serves=rng.choice((None,) * 6 + (["gh:org/r1*"], ["gl:*", "GH:org/r2"])),
    )


@pytest.mark.parametrize("seed", range(2), ids=lambda s: f"seed-{s}")
@pytest.mark.parametrize("settings", [RoutingSettings(), RoutingSettings(ready_time_weight=0.5, weight_seconds=20,
                                                                         suspect_seconds=0, near_equal=40),
                                      # Load only through the hot rules, so which rule applies decides.
                                      RoutingSettings(load_seconds=0.0, spill_min_sessions=4.0)],
                         ids=["defaults", "other-settings", "hot-rules-decide"])
def test_index_matches_rank_through_churn(seed: int, settings: RoutingSettings) -> None:
    rng = random.Random(seed)
    clock = FakeClock(1000.0)
    members = _members(rng, 400)
    snapshot, _ = build(members, clock)
    table = HealthTable(HealthSettings(), clock, random.Random(seed))
    table.sync(snapshot.members)  # type: ignore[attr-defined]
    for m in members:  # the same starting health as test_routing's builder, through the table
        if m.poll != "never":
            table.member(m.id).record_poll(_ad(m.id, clock.now(), rng))
    index, watch = RoutingIndex(settings), table.watch()
    pending = PendingImages()
    for step in range(150):
        views = table.views()
        index.update(snapshot, views, set(watch))  # type: ignore[arg-type]
        watch.clear()
        req = _request(rng)
        now_pending = pending.at(image_hash(req.repo.key), clock.now())
        chosen = _same(index, snapshot, views, req, settings, now_pending)  # type: ignore[arg-type]
        roll = rng.random()
        ids = sorted(snapshot.members)  # type: ignore[attr-defined]
        if chosen is not None and roll < 0.4:  # the launch counts as provisional load at once
            table.member(chosen).record_launch_started()
            pending.add(image_hash(req.repo.key), chosen, clock.now() + 60)
        elif roll < 0.7:
            m = rng.choice(ids)
            table.member(m).record_poll(_ad(m, clock.now(), rng) if rng.random() > 0.1 else None, "timeout")
        elif roll < 0.8:
            m = rng.choice(ids)
            if rng.random() < 0.5:
                table.member(m).record_launch_success(rng.uniform(1, 60))
            else:
                table.member(m).record_launch_failure()
        elif roll < 0.85:  # a registry change: one member's weight or state
            m = rng.choice(ids)
            entry = snapshot.members[m]  # type: ignore[attr-defined]
            record = entry.record.model_copy(update={
                "weight": rng.choice((0.0, 1.0, 3.0)),
                "state": rng.choice((MemberState.active, MemberState.active, MemberState.draining))})
            entries = dict(snapshot.members)  # type: ignore[attr-defined]
            entries[m] = MemberEntry(record=record, keys=entry.keys)
            snapshot = RegistrySnapshot(revision=snapshot.revision + 1, members=MappingProxyType(entries))  # type: ignore[attr-defined]
        else:
            clock.advance(rng.choice((1.0, 7.0)))  # ads expire with time alone


def test_members_that_do_not_serve_a_repo_are_skipped_by_rank_and_the_index_alike() -> None:
    """A member whose ad lists what it serves (a JupyterHub member's globs) is never tried for
    another repository: both deciders skip it, and a dry run says why."""
    clock = FakeClock(1000.0)
    members = [M("hub", serves=["gh:lab/*"]), M("hub2", serves=["gl:*"], used=0), M("other", used=8)]
    snapshot, views = build(members, clock)
    index = RoutingIndex(RoutingSettings())
    index.update(snapshot, views, set(views))  # type: ignore[arg-type]
    for spec, routable in (("lab/paper/HEAD", ["hub", "other"]), ("org/x/HEAD", ["other"])):
        req = RouteRequest(repo=RepoSpec.parse("gh", spec))
        _same(index, snapshot, views, req, RoutingSettings())
        dry = rank(snapshot, views, req, RoutingSettings(), decision_id="d")  # type: ignore[arg-type]
        assert [c.member_id for c in dry.candidates if c.routable] == routable
        assert [c.member_id for c in index.explain(req, "d").candidates if c.routable] == routable
        reasons = {c.member_id: c.reason for c in dry.candidates if not c.routable}
        assert reasons["hub2"] == f"does not serve {req.repo.key}: it serves gl:*"
    # Nothing serves it: the real decision lists every member with the same why as rank.
    only_hubs = [M("hub", serves=["gh:lab/*"]), M("hub2", serves=[])]
    snapshot, views = build(only_hubs, clock)
    index = RoutingIndex(RoutingSettings())
    index.update(snapshot, views, set(views))  # type: ignore[arg-type]
    req = RouteRequest(repo=RepoSpec.parse("gh", "org/x/HEAD"))
    assert _same(index, snapshot, views, req, RoutingSettings()) is None
    got = index.decide(req, "d", DETAIL)
    assert [(c.member_id, c.reason) for c in got.candidates] == [
        ("hub", "does not serve gh:org/x: it serves gh:lab/*"), ("hub2", "does not serve gh:org/x: it serves no repository")]


def test_a_thousand_uncached_repos_spread_with_provisional_load() -> None:
    """Redirect-mode bursts: each decision counts its launch at once, so 1,000 distinct uncached
    repos over 1,000 equal idle members land on many members, not on the few cheapest."""
    clock = FakeClock(1000.0)
    members = [M(f"m{i:04d}", used=0, total=4) for i in range(1000)]
    snapshot, _ = build(members, clock)
    table = HealthTable(HealthSettings(), clock, random.Random(1))
    table.sync(snapshot.members)  # type: ignore[attr-defined]
    for m in members:
        ad = StatusAd(member_id=m.id, instance_id="t", generation=1, issued_at=clock.now(),
                      expires_at=clock.now() + 600, healthy=True, capacity=Capacity(total=4, used=0, building=0),
                      backend="t", providers=[], images=ImageSummary(hashes=[], total=0))
        table.member(m.id).record_poll(ad)
    index, watch = RoutingIndex(RoutingSettings()), table.watch()
    landed = []
    for k in range(1000):
        views = table.views()
        index.update(snapshot, views, set(watch))  # type: ignore[arg-type]
        watch.clear()
        decision = index.decide(RouteRequest(repo=RepoSpec.parse("gh", f"org/uncached{k}/HEAD")), "d", 10)
        assert decision.chosen is not None
        table.member(decision.chosen).record_launch_started()
        landed.append(decision.chosen)
    assert len(set(landed)) >= 500, len(set(landed))


def test_launches_of_a_new_repo_follow_its_pending_build() -> None:
    """The first launch of an uncached repo starts a build at one member; until that member's ad lists
    the image, the repo's next launches go there too (its image part is 0), not to idler members."""
    from fedbroker.registry.snapshot import SnapshotHolder
    from fedbroker.routing.live import LiveRouter

    clock = FakeClock(1000.0)
    members = [M(f"m{i}", used=0, total=50) for i in range(6)]
    snapshot, _ = build(members, clock)
    table = HealthTable(HealthSettings(), clock, random.Random(1))
    table.sync(snapshot.members)  # type: ignore[attr-defined]
    for i, m in enumerate(members):
        ad = StatusAd(member_id=m.id, instance_id="t", generation=1, issued_at=clock.now(),
                      expires_at=clock.now() + 600, healthy=True, capacity=Capacity(total=50, used=3 * i, building=0),
                      backend="t", providers=[], images=ImageSummary(hashes=[], total=0))
        table.member(m.id).record_poll(ad)
    live = LiveRouter(RoutingSettings(), SnapshotHolder(snapshot), table, clock)  # type: ignore[arg-type]
    req = RouteRequest(repo=RepoSpec.parse("gh", "org/brand-new/HEAD"))
    first = live.decide(req, "d", 10).chosen
    assert first == "m0"  # the idlest
    live.launched(first, req)
    for _ in range(5):  # m0 is now busier than m1..m5, yet the build there wins
        decision = live.decide(req, "d", 10)
        assert decision.chosen == "m0", decision.candidates[:3]
        live.launched("m0", req)
    clock.advance(RoutingSettings().pending_image_seconds + 1)
    assert live.decide(req, "d", 10).chosen != "m0"  # the pending build is forgotten
    other = live.decide(RouteRequest(repo=RepoSpec.parse("gh", "org/another/HEAD")), "d", 10)
    assert other.chosen != "m0"


def test_members_of_equal_cost_are_ordered_as_rank_orders_them() -> None:
    """Idle members of one size cost exactly the same: rank takes the near-equal set's cheapest by
    member id, and the index, which stops scanning inside such a run of equal costs, must take the
    very same members (across regions and ready histories, for new and cached repos alike)."""
    rng = random.Random(11)
    clock = FakeClock(1000.0)
    # A few sizes, weights and loads, so runs of equal cost are long, and parts like 1/0.7 or 2/7 whose
    # float sums differ in the last bits from one order of addition to another.
    members = [M(f"m{i:03d}", weight=rng.choice((1.0, 0.7, 3.0)), total=rng.choice((7, 10)),
                 region=rng.choice(("eu", "us", None)), images=["gh:org/held"] if i % 9 == 0 else [])
               for i in range(300)]
    snapshot, _ = build(members, clock)
    table = HealthTable(HealthSettings(), clock, random.Random(1))
    table.sync(snapshot.members)  # type: ignore[attr-defined]
    for m in members:
        ad = StatusAd(member_id=m.id, instance_id="t", generation=1, issued_at=clock.now(), expires_at=clock.now() + 600,
                      healthy=True, capacity=Capacity(total=m.total, used=rng.choice((0, 0, 0, 1, 2)), building=0), backend="t",
                      providers=[], location=Location(region=m.region),
                      images=ImageSummary(hashes=[image_hash(i) for i in m.images], total=len(m.images)))
        table.member(m.id).record_poll(ad)
    index, watch = RoutingIndex(RoutingSettings()), table.watch()
    for k in range(120):
        views = table.views()
        index.update(snapshot, views, set(watch))  # type: ignore[arg-type]
        watch.clear()
        repo = "org/held/HEAD" if k % 5 == 0 else f"org/new{k}/HEAD"
        req = RouteRequest(repo=RepoSpec.parse("gh", repo), client_region=rng.choice((None, None, "eu")))
        expected = rank(snapshot, views, req, RoutingSettings(), decision_id="d", detail=10)  # type: ignore[arg-type]
        got = index.decide(req, "d", 10)
        assert [(c.member_id, c.cost) for c in got.candidates] == [(c.member_id, c.cost) for c in expected.candidates], k
        table.member(got.chosen).record_launch_started()  # type: ignore[arg-type]
