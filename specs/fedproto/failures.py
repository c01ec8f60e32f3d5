"""The one failure-code table: what a ``failed`` launch event's ``status_code`` means, and
whether the broker tries the launch on another member.

Every backend ends a failed launch with one of these codes, and the broker's relay decides
failover from the code alone, so an unbuildable repository is final on every kind of member
and a full or broken member is never the end of a launch.

==============  ====  ========  ======================================================
Failure         code  failover  meaning
==============  ====  ========  ======================================================
BAD_REQUEST     400   no        the spec or request is refused (every member would)
NOT_FOUND       404   no        the repository, ref or image does not exist
CONFLICT        409   no        the launch id is already in use on this member
UNBUILDABLE     422   no        the repository does not build
CANCELLED       499   no        the client or an administrator ended the launch
CAPACITY        429   yes       this member is full (or rate limiting)
ERROR           500   yes       this member hit an unexpected error
NOT_SUPPORTED   501   yes       this member cannot do what was asked (build only)
UPSTREAM        502   yes       the site's compute answered badly or broke the stream
UNAVAILABLE     503   yes       the site's compute is down or misconfigured
TIMEOUT         504   yes       the launch did not finish in time here
==============  ====  ========  ======================================================

Codes not in the table keep HTTP's reading: 429 and 5xx fail over, other 4xx are final.
A ``failed`` without a code (BinderHub's own build errors have none) is final unless its
message speaks of capacity.
"""

from __future__ import annotations

import re
from enum import IntEnum


class Failure(IntEnum):
    """Why a launch failed, as the ``status_code`` of its ``failed`` event."""

    BAD_REQUEST = 400
    NOT_FOUND = 404
    CONFLICT = 409
    UNBUILDABLE = 422
    CAPACITY = 429
    CANCELLED = 499
    ERROR = 500
    NOT_SUPPORTED = 501
    UPSTREAM = 502
    UNAVAILABLE = 503
    TIMEOUT = 504


_CAPACITY_WORDS = re.compile(r"quota|capacity|too many|no space|insufficient|full", re.IGNORECASE)


def fails_over(status_code: int | None, message: str = "") -> bool:
    """Whether a ``failed`` event is the member's trouble (try another) rather than the repository's."""
    if status_code is None:
        return _CAPACITY_WORDS.search(message) is not None
    return status_code == Failure.CAPACITY or status_code >= 500


_OUTCOMES: dict[int, str] = {
    Failure.CAPACITY: "rejected",
    Failure.TIMEOUT: "timeout",
    Failure.ERROR: "error",
    Failure.CANCELLED: "cancelled",
}


def outcome_label(status_code: int | None) -> str:
    """A short label for metrics: ``rejected``, ``timeout``, ``error``, ``cancelled`` or ``failed``."""
    return _OUTCOMES.get(status_code or 0, "failed")
