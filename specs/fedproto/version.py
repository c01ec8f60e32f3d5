"""The protocol's version and the rule for talking to a peer of another version.

Institutions upgrade their brokers and members on their own schedules, so both sides say
which protocol they speak, ``MAJOR.MINOR``, in the ``Federation-Protocol`` header of every
request and answer, and both sides accept any peer of the same major version:

* an additive change (a new optional field, a new event field, a new endpoint) is a new
  minor version, and a receiver ignores fields it does not know (:meth:`WireModel.received`);
* a removal, a new required field or a change of meaning is a new major version, and a
  receiver refuses a major it does not speak with :class:`ProtocolVersionError`, which
  names both versions, rather than misreading the other side.

A peer that sends no header predates versioning and speaks 1.0. Each release keeps
interoperating with the previous minor release of its major (N-1), as FEDERATION.md promises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ProtocolError

PROTOCOL_HEADER = "Federation-Protocol"
_VERSION = re.compile(r"^(\d{1,4})\.(\d{1,4})$")


@dataclass(frozen=True, order=True)
class ProtocolVersion:
    """``MAJOR.MINOR`` of the federation protocol."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> ProtocolVersion:
        match = _VERSION.match(text.strip())
        if match is None:
            raise ProtocolVersionError(f"{text[:40]!r} is not a protocol version (MAJOR.MINOR)")
        return cls(int(match.group(1)), int(match.group(2)))


# 1.1 added, all optional: status-ad broker_kids, serves and redirect; launch tickets;
# the signed broker key set. FEDERATION.md section 9 keeps the list.
PROTOCOL = ProtocolVersion(1, 1)
BEFORE_VERSIONING = ProtocolVersion(1, 0)  # what a peer that sends no header speaks


class ProtocolVersionError(ProtocolError):
    """A peer speaks a major version of the protocol this side does not."""

    reason = "unsupported_protocol_version"


def peer_version(header: str | None, *, peer: str) -> ProtocolVersion:
    """The version a peer announced in :data:`PROTOCOL_HEADER`; refuses another major version.

    ``peer`` names the other side in the error ("member site-a", "the broker").
    """
    if header is None or not header.strip():
        return BEFORE_VERSIONING
    version = ProtocolVersion.parse(header)
    if version.major != PROTOCOL.major:
        raise ProtocolVersionError(
            f"{peer} speaks federation protocol {version}, but this side speaks {PROTOCOL.major}.x; "
            f"one of them must be upgraded (see FEDERATION.md, 'Protocol versions')"
        )
    return version
