"""The member state machine, in one place: which admin action moves a member from which state to which.

::

    pending --approve--> active --drain--> draining --retire--> retired
                           ^                  |
                           +-----undrain------+
    any state except disabled --disable--> disabled --approve--> active

Decisions (see FEDERATION.md, "Member states"):

- ``disabled`` is a quarantine reachable from every other state. Leaving it is an
  explicit ``approve`` straight to ``active``: the admin who lifts a quarantine has
  just looked at the member, and an extra ``pending`` step would only add a click.
- ``retire`` is what removing a member does (``DELETE /api/v1/members/{id}``). It is
  legal from ``draining`` (sessions had time to finish), from ``pending`` (it never
  served) and from ``disabled``; an ``active`` member must be drained first.
- An action that would leave the state unchanged (approving an active member) is
  illegal too: a 409 tells a script its idea of the state is out of date.
"""

from __future__ import annotations

from enum import Enum

from fedproto.errors import Conflict, NotFound
from fedproto.member import MemberState



class Action(str, Enum):
    """The admin actions that change a member's state."""

    approve = "approve"
    drain = "drain"
    undrain = "undrain"
    disable = "disable"
    retire = "retire"


S = MemberState

TRANSITIONS: dict[Action, dict[MemberState, MemberState]] = {
    Action.approve: {S.pending: S.active, S.disabled: S.active},
    Action.drain: {S.active: S.draining},
    Action.undrain: {S.draining: S.active},
    Action.disable: {s: S.disabled for s in MemberState if s is not S.disabled},
    Action.retire: {S.draining: S.retired, S.pending: S.retired, S.disabled: S.retired},
}

# Routing sends new launches only to these.
ROUTABLE_STATES = frozenset({S.active})


def next_state(current: MemberState, action: Action, verb: str | None = None) -> MemberState:
    """The state ``action`` moves a member in ``current`` to, or :class:`Conflict` (409).

    ``verb`` names the command in the message when it is not the action itself
    (``remove`` retires, and its refusal must say "cannot remove").
    """
    allowed = TRANSITIONS[action]
    target = allowed.get(current)
    if target is None:
        sources = ", ".join(sorted(s.value for s in allowed))
        verb = verb or action.value
        raise Conflict(
            f"cannot {verb} a member that is {current.value}; "
            f"{verb} applies to a member that is {sources}",
            reason="illegal_transition",
        )
    return target


def parse_action(text: str) -> Action:
    """The action named in a URL, or 404 for an unknown one."""
    try:
        return Action(text)
    except ValueError:
        raise NotFound(f"unknown member action {text!r}", reason="unknown_action") from None
