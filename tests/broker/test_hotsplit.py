"""The hot rule turned around (``facts.hot_until``) and the split of listed members it keeps
(``HotSplit``): what the routing index scans instead of every member."""

from __future__ import annotations

import random

import pytest

from fedproto.clock import FakeClock
from fedproto.repospec import RepoSpec

from fedbroker.config import RoutingSettings
from fedbroker.routing.facts import hot_until, is_hot
from fedbroker.routing.hotsplit import HotSplit
from fedbroker.routing.index import RoutingIndex
from fedbroker.routing.rank import RouteRequest, rank

from test_routing import M, build

RULES = [RoutingSettings(), RoutingSettings(load_spill_factor=1.5, spill_min_sessions=0.0, new_repo_spill_factor=2.0),
         RoutingSettings(load_spill_factor=1.0, spill_min_sessions=7.0)]


@pytest.mark.parametrize("settings", RULES, ids=["defaults", "other-factors", "large-minimum"])
@pytest.mark.parametrize("new_repo", [False, True], ids=["held", "new"])
def test_hot_until_is_the_hot_rule_turned_around(settings: RoutingSettings, new_repo: bool) -> None:
    """For any member and federation: hot by ``is_hot`` exactly when the federation's sessions per unit
    of weight are below ``hot_until`` (off by float rounding only at the edge itself)."""
    rng = random.Random(7)
    checked = 0
    for _ in range(20_000):
        occupied = float(rng.randrange(0, 60))
        weight = rng.choice((0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 10.0))
        total_weight = weight + rng.choice((0.0, 1.0, 7.5, 40.0, 333.3))
        sessions = float(rng.randrange(0, 400)) + occupied
        per_weight = sessions / total_weight
        until = hot_until(occupied, weight, settings, new_repo)
        if abs(per_weight - until) <= 1e-9 * max(1.0, abs(until)):
            continue  # the edge: either answer is the rule
        assert is_hot(occupied, weight / total_weight * sessions, settings, new_repo) == (per_weight < until), (
            occupied, weight, total_weight, sessions)
        checked += 1
    assert checked > 19_000
    assert hot_until(5.0, 0.0, RoutingSettings(), new_repo) == float("-inf")  # weight 0: never in the share


def test_the_split_keeps_every_member_on_the_side_its_number_says() -> None:
    """Through placements, removals and the federation's ratio moving both ways: the hot set holds
    exactly the members whose number is above the ratio (by the margin), the cool lists the others
    in base order; members crossing are moved when the ratio passes their number."""
    rng = random.Random(3)
    split: HotSplit[str] = HotSplit()
    placed: dict[str, tuple[str, float, float]] = {}
    ratio = 1.0
    for step in range(3000):
        roll = rng.random()
        if roll < 0.45:
            m = f"m{rng.randrange(80)}"
            key = rng.choice(("eu", "us"))
            base = float(rng.randrange(20))
            until = rng.choice((float("-inf"), rng.uniform(0, 3)))
            split.place(m, key, base, until)
            placed[m] = (key, base, until)
        elif roll < 0.6 and placed:
            m = rng.choice(sorted(placed))
            split.remove(m)
            del placed[m]
        else:
            ratio = max(0.0, ratio + rng.uniform(-0.3, 0.3))
            split.advance(ratio)
            hot = {m for m, (_, _, until) in placed.items() if ratio < until * (1 - 1e-6) - 1e-6}
            cool = {m for m, (_, _, until) in placed.items() if ratio >= until}
            assert hot <= split.hot and not (cool & split.hot), step
            for key, items in split.cool.items():
                assert items == sorted(items)
                assert {m for _, m in items} == {m for m, at in placed.items() if at[0] == key and m not in split.hot}
    assert len(split) == len(placed)


def test_cool_members_first_and_hot_ones_only_when_too_few_are_cool() -> None:
    """Twelve members, nine far above their share: a decision listing ten takes the three cool ones,
    then the hot ones by cost, exactly as ``rank`` orders them; with the hot ones cool again, they mix."""
    clock = FakeClock(1000.0)
    members = [M(f"m{i:02d}", used=9 if i % 4 else 0, total=10) for i in range(12)]
    snapshot, views = build(members, clock)
    index = RoutingIndex(RoutingSettings())
    index.update(snapshot, views, set(views))  # type: ignore[arg-type]
    request = RouteRequest(repo=RepoSpec.parse("gh", "org/nobody-has-it/HEAD"))
    got = index.decide(request, "d", 10)
    want = rank(snapshot, views, request, RoutingSettings(), decision_id="d", detail=10)  # type: ignore[arg-type]
    assert [(c.member_id, c.cost) for c in got.candidates] == [(c.member_id, c.cost) for c in want.candidates]
    assert [c.member_id for c in got.candidates[:3]] == ["m00", "m04", "m08"]
    assert all(c.reason.startswith("spilled") for c in got.candidates[3:])
