"""The poll schedule: which members are due, without looking at the ones that are not."""

from __future__ import annotations

import random

from fedproto.clock import FakeClock

from fedbroker.config import HealthSettings
from fedbroker.launch.schedule import NOT_OWNED_RECHECK, PollSchedule
from fedbroker.routing.health import HealthTable

IDS = [f"m{i:04d}" for i in range(1000)]


class CountingTable(HealthTable):
    """A health table that counts how many members a caller looked up."""

    lookups = 0

    def get(self, member_id: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return super().get(member_id)


def _setup(ids: list[str] = IDS) -> tuple[FakeClock, CountingTable, PollSchedule]:
    clock = FakeClock()
    table = CountingTable(HealthSettings(jitter=0.0), clock, random.Random(0))
    table.sync(ids)
    schedule = PollSchedule(table)
    schedule.sync(ids, clock.now())
    return clock, table, schedule


def _poll(table: HealthTable, schedule: PollSchedule, member_id: str) -> None:
    """What the poller does when a poll ends: the health state records it, the schedule follows."""
    table.member(member_id).record_poll(None, "down")
    schedule.polled(member_id)


def test_new_members_are_due_at_once_and_not_again_until_their_next_poll() -> None:
    clock, table, schedule = _setup(["a", "b"])
    assert schedule.take_due(clock.now(), polling=lambda m: False) == ["a", "b"]
    for m in ("a", "b"):
        _poll(table, schedule, m)
    assert schedule.take_due(clock.now(), polling=lambda m: False) == []
    next_at = schedule.next_due_at()
    assert next_at is not None and next_at == table.member("a").next_poll_at > clock.now()
    clock.advance(next_at - clock.now())
    assert schedule.take_due(clock.now(), polling=lambda m: False) == ["a", "b"]


def test_a_round_looks_only_at_the_members_due() -> None:
    clock, table, schedule = _setup()
    for m in schedule.take_due(clock.now(), polling=lambda m: False):
        _poll(table, schedule, m)
    table.member("m0500").next_poll_at = clock.now()  # one member due again, e.g. after a failure
    schedule.polled("m0500")
    table.lookups = 0
    assert schedule.take_due(clock.now(), polling=lambda m: False) == ["m0500"]
    assert table.lookups <= 2  # not 1,000: the other 999 are not due and not looked at


def test_a_member_being_polled_is_not_started_twice_and_comes_back_when_its_poll_ends() -> None:
    clock, table, schedule = _setup(["a"])
    assert schedule.take_due(clock.now(), polling=lambda m: True) == []
    _poll(table, schedule, "a")
    clock.advance(table.member("a").next_poll_at - clock.now())
    assert schedule.take_due(clock.now(), polling=lambda m: False) == ["a"]


def test_members_another_replica_owns_are_looked_at_again_soon() -> None:
    clock, table, schedule = _setup(["a", "b"])
    owned = {"a"}
    assert schedule.take_due(clock.now(), polling=lambda m: False, owns=owned.__contains__) == ["a"]
    owned.add("b")  # the replica that owned b died; its lease passed here
    clock.advance(NOT_OWNED_RECHECK)
    assert schedule.take_due(clock.now(), polling=lambda m: False, owns=owned.__contains__) == ["b"]


def test_a_time_moved_by_a_shared_result_is_followed_and_removed_members_drop_out() -> None:
    clock, table, schedule = _setup(["a", "b"])
    table.member("a").record_poll(None, "down")  # another replica's result: a's next poll moved
    schedule.sync(["a"], clock.now())  # b left the registry
    assert schedule.take_due(clock.now(), polling=lambda m: False) == []
    clock.advance(table.member("a").next_poll_at - clock.now())
    assert schedule.take_due(clock.now(), polling=lambda m: False) == ["a"]
    schedule.sync(["a", "b"], clock.now())  # b is back: due at once
    assert schedule.take_due(clock.now(), polling=lambda m: False) == ["b"]
