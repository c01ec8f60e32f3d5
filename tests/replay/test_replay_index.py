"""A trace replayed through the broker's routing index and through ``rank`` over every member, side by side:
at every launch of the replay both rank the same members in the same order at the same costs."""

from __future__ import annotations

import random
from typing import Sequence

from benchmarks.replay.federation import MemberSpec
from benchmarks.replay.policies import Router
from benchmarks.replay.published import PublishedShape, generate_published
from benchmarks.replay.simulation import Replay, ReplaySettings
from benchmarks.replay.targets import Target
from fedbroker.config import RoutingSettings
from fedbroker.routing.rank import rank

# Pending images are the index's addition (rank knows none unless told): off, so both see the same inputs.
SETTINGS = RoutingSettings(pending_image_seconds=0)


class Both(Router):
    """The broker's router (the index), checked against ``rank`` over the same snapshot and health."""

    compared = 0

    def choose(self, target: Target, now: float) -> Sequence[int]:
        chosen = super().choose(target, now)
        plain = rank(self._snapshot, self._health.views(), target.request, self._settings, decision_id="replay",
                     detail=self._detail)
        assert [self._index[c.member_id] for c in plain.candidates if c.routable] == list(chosen), target.repo_key
        Both.compared += 1
        return chosen


def _federation(n: int) -> tuple[MemberSpec, ...]:
    rng = random.Random(3)
    return tuple(MemberSpec(id=f"m{i:02d}", weight=rng.choice((1.0, 1.0, 2.0, 4.0)), capacity=rng.choice((4, 10, 30)),
                            region=rng.choice(("eu", "us", "")), failure_probability=0.02) for i in range(n))


def test_index_and_rank_choose_alike_over_a_replayed_trace() -> None:
    federation = _federation(40)
    replay = Replay(federation, "router", ReplaySettings(min_hour_load=1), SETTINGS)
    replay.policy = Both(federation, SETTINGS, replay.clock, 10.0, 3)
    launches = generate_published(PublishedShape(launches=600, year_launches=400_000, year_repos=3_000), seed=5)
    result = replay.run(launches)
    assert result.launches == len(launches) and Both.compared >= len(launches)
    assert result.refused < len(launches) / 2  # the federation was busy, not empty or always full
