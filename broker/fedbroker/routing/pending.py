"""Where each repo was just sent: builds under way that members' image summaries do not list yet.

Kept by :class:`~fedbroker.routing.live.LiveRouter`, which passes the members a repo is pending at
to each decision (the routing index prices them as holding its image). Pure: callers pass ``now``.
"""

from __future__ import annotations

__all__ = ["PendingImages"]


class PendingImages:
    """Where each repo was just sent, until the member's image summary can list it.

    A launch of a repo a member does not hold starts a build there, and the member's ad lists the
    image only once the build finished; without this, every launch of a new repo during its build
    (a class, a workshop, a repo shared on social media) looked uncached everywhere and spread
    builds over the federation. An entry lasts ``pending_image_seconds``.
    """

    MAX_REPOS = 100_000  # bounds memory; the oldest entries go first

    def __init__(self) -> None:
        self._until: dict[str, dict[str, float]] = {}

    def add(self, image: str, member_id: str, until: float) -> None:
        members = self._until.pop(image, None) or {}
        members[member_id] = until
        self._until[image] = members  # re-inserted: the dict's order is least recently sent first
        if len(self._until) > self.MAX_REPOS:
            del self._until[next(iter(self._until))]

    def at(self, image: str, now: float) -> frozenset[str]:
        members = self._until.get(image)
        if not members:
            return frozenset()
        live = frozenset(m for m, until in members.items() if until > now)
        if len(live) < len(members):
            if live:
                self._until[image] = {m: members[m] for m in live}
            else:
                del self._until[image]
        return live
