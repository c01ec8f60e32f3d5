"""Repo-key globs in the status ad: what matches, what is refused, and that a member's hostile
pattern is rejected with the ad instead of ever being run by the broker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fedproto.repoglob import MAX_GLOB_CHARS, MAX_SERVES, check_glob, glob_matches, serves_repo
from fedproto.status import Capacity, StatusAd


@pytest.mark.parametrize("pattern, key, expected", [
    ("gh:org/*", "gh:org/repo", True),
    ("gh:org/*", "gh:org2/repo", False),
    ("gh:org/*", "gl:org/repo", False),
    ("gh:*/notebooks", "gh:a/b/notebooks", True),  # * crosses "/"
    ("gh:*/notebooks", "gh:a/notebooks-x", False),
    ("gh:org/repo", "gh:org/repo", True),  # no wildcard: the whole key
    ("gh:org/repo", "gh:org/repo2", False),
    ("GH:Org/*", "gh:org/x", True),  # case is ignored (gh keys are lower-cased)
    ("*", "git:https://example.org/x.git", True),
    ("gh:a*a", "gh:a", False),  # the pieces may not overlap
    ("gh:a*b*c", "gh:axxbyyc", True),
    ("gh:a*b*c", "gh:acb", False),
    ("gh:a.b/*", "gh:axb/x", False),  # "." is literal, not a regex
])
def test_glob_matches(pattern: str, key: str, expected: bool) -> None:
    assert glob_matches(check_glob(pattern), key) is expected


def test_no_list_serves_everything_an_empty_list_nothing() -> None:
    assert serves_repo(None, "gh:any/thing")
    assert not serves_repo([], "gh:any/thing")
    assert serves_repo(["gl:*", "gh:org/*"], "gh:org/x")


@pytest.mark.parametrize("pattern", [
    "", "x" * (MAX_GLOB_CHARS + 1), "gh:*a*a*a*a*a", "gh:org/[a-z]*", "gh:org/?", "gh:org/{a,b}",
    "gh:org/ repo", "gh:(a+)+\\$", "gh:org/\n",
])
def test_invalid_or_hostile_globs_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_glob(pattern)


def _ad(serves: object) -> StatusAd:
    return StatusAd.model_validate(dict(member_id="m1", instance_id="i", generation=0, issued_at=1.0, expires_at=2.0,
                                        healthy=True, capacity=Capacity(total=1, used=0), backend="jupyterhub",
                                        serves=serves))


def test_the_status_ad_validates_its_globs() -> None:
    assert _ad(["gh:org/*"]).serves == ["gh:org/*"]
    assert _ad(None).serves is None
    with pytest.raises(ValidationError):
        _ad(["gh:(a+)+$[x]"])
    with pytest.raises(ValidationError):
        _ad([f"gh:o/{i}" for i in range(MAX_SERVES + 1)])

