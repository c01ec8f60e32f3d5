"""What a member's launch events may carry on to clients: checked and bounded before relaying.

Members are semi-trusted: their requests are signed, but what they say is checked. Here:

* **Fields**: a relayed event carries only BinderHub's known fields plus the broker's own
  (``member``, ``decision``), which the broker sets; a member's extra or broker-only fields
  are dropped, and link fields that are not http(s) are dropped too.
* **ready.url**: the server URL sent to the user's browser (with the notebook token) must be
  http(s) on the host of the member's registered public URL, and https when that is https.
  Anything else (another host, ``javascript:``, ``data:``, ``//evil.example``) is refused:
  the launch fails over, and the member is charged with a failure. The port may differ: a
  single-machine site (the local backend) serves each notebook server on a port of its own,
  and a member controls every port of its own host anyway.
* **Size**: each event, and one launch attempt's events together, are capped
  (:class:`EventBudget`); going over is a protocol error, with failover and a failed outcome.

Pure: no I/O. The member client feeds bytes to the budget; the relay calls the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from fedproto.launch import LaunchEvent
from fedproto.urlpolicy import origin

BROKER_FIELDS = frozenset({"member", "decision"})
# BinderHub's /build event fields (binderhub/builder.py and its launcher), as LaunchEvent declares them.
BINDERHUB_FIELDS = frozenset(LaunchEvent.model_fields) - BROKER_FIELDS
_LINK_FIELDS = ("repo_url", "binder_ref_url", "binder_launch_host")


class EventRejected(Exception):
    """A member event the broker will not relay; ``message`` says why (it names the member's fault)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def relayable(event: LaunchEvent, member_id: str) -> LaunchEvent:
    """``event`` with only BinderHub's known fields, http(s) links only, and ``member`` set to who sent it."""
    data = event.model_dump(include=set(BINDERHUB_FIELDS), exclude_none=True)
    for name in _LINK_FIELDS:
        if name in data and origin(str(data[name])) is None:
            del data[name]
    return LaunchEvent.model_validate({**data, "member": member_id})


def ready_url(event: LaunchEvent, public_url: str) -> str:
    """The absolute server URL of a ``ready`` event, with a trailing slash; :class:`EventRejected`
    unless it is http(s) on the host of the member's registered ``public_url`` (no https downgrade)."""
    if not event.url:
        raise EventRejected("ready event without a server URL")
    base = public_url.rstrip("/") + "/"
    url = urljoin(base, event.url.strip())
    home, there = origin(base), origin(url)
    if home is None or there is None or there[1] != home[1] or (home[0] == "https" and there[0] != "https"):
        raise EventRejected(f"ready URL is not on the member's public host ({home[1] if home else public_url}); "
                            "refused so the user's browser and token go nowhere else")
    parts = urlsplit(url)
    return parts._replace(path=parts.path if parts.path.endswith("/") else parts.path + "/").geturl()


@dataclass
class EventBudget:
    """How many bytes one launch attempt's events may take: ``per_event`` for one event (all its
    ``data:`` lines together), ``total`` for the whole attempt, comments and keepalives included."""

    per_event: int
    total: int
    spent: int = field(default=0)
    current: int = field(default=0)

    def line(self, size: int, *, data: bool) -> None:
        """Account one line of ``size`` bytes (``data``: part of the event being assembled)."""
        self.spent += size
        if self.spent > self.total:
            raise EventRejected(f"launch events exceeded {self.total} bytes")
        if data:
            self.current += size
            if self.current > self.per_event:
                raise EventRejected(f"an event exceeded {self.per_event} bytes")

    def event_done(self) -> None:
        self.current = 0
