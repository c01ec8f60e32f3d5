"""The one failure-code table: which failures the broker tries elsewhere, for every backend alike."""

from __future__ import annotations

import pytest

from fedproto.failures import Failure, fails_over, outcome_label

FINAL = {Failure.BAD_REQUEST, Failure.NOT_FOUND, Failure.CONFLICT, Failure.UNBUILDABLE, Failure.CANCELLED}


@pytest.mark.parametrize("failure", list(Failure), ids=[f.name for f in Failure])
def test_the_repositorys_fault_is_final_and_the_members_fails_over(failure: Failure) -> None:
    assert fails_over(failure) is (failure not in FINAL)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (418, "", False),  # an unknown 4xx keeps HTTP's reading: the request's fault
        (507, "", True),  # an unknown 5xx: the member's
        (None, "Build failed\n", False),  # BinderHub's own build errors carry no code
        (None, "User server quota exceeded.\n", True),
        (None, "This member is full\n", True),
    ],
)
def test_codes_outside_the_table_and_missing_codes(code: int | None, message: str, expected: bool) -> None:
    assert fails_over(code, message) is expected


def test_metric_labels() -> None:
    assert [outcome_label(c) for c in (429, 504, 500, 499, 422, None)] == [
        "rejected", "timeout", "error", "cancelled", "failed", "failed"]
