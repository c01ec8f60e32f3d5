"""What BinderHub says, in fedproto's terms: stream events, failure status codes, and its ``/health`` body.

Pure functions, no I/O, so every mapping rule is tested table-driven without a server.

Failure status codes, from the one table :mod:`fedproto.failures` (the broker fails over on
429 and 5xx, and does not on other 4xx):

=====================================================  ======
BinderHub says                                          code
=====================================================  ======
``failed`` with a ``status_code`` (e.g. rate limit)    kept as sent
``failed`` whose message says "Too many users"/quota    429
``failed`` "No provider found for prefix"              501
``failed`` "Could not resolve ref"                      404
``failed`` "Failed to launch", "timed out", "Error"     503
any other bare ``failed`` (a repo that does not build)  422
=====================================================  ======

A bare ``failed`` is treated as the repo's fault by default (422, or 404 when
BinderHub says it cannot find it): retrying an unbuildable repo on another member
would only repeat the failure there. Site trouble is recognised by its message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from fedproto.failures import Failure
from fedproto.launch import LaunchEvent, Phase
from fedproto.status import Capacity, HealthCheck

KNOWN_PHASES = frozenset(get_args(Phase))
# Fields the broker adds itself; an upstream must not be able to set them.
BROKER_FIELDS = ("member", "decision", "launch_id")
POD_QUOTA_SERVICE = "Pod quota"

_QUOTA = re.compile(r"too many users|quota", re.IGNORECASE)
_NOT_FOUND = re.compile(r"could not resolve ref|not found", re.IGNORECASE)
# This BinderHub does not serve the provider; another member may (so it fails over).
_NO_PROVIDER = re.compile(r"no provider found", re.IGNORECASE)
_SITE_TROUBLE = re.compile(r"failed to launch|timed out|timeout|internal|^error", re.IGNORECASE)
_USER_PATH = re.compile(r"/user/([^/]+)/")


def failure_status(message: str, status_code: int | None) -> int:
    """The status code a ``failed`` event gets (see the module docstring's table)."""
    if status_code is not None:
        return status_code
    if _QUOTA.search(message):
        return int(Failure.CAPACITY)
    if _NO_PROVIDER.search(message):
        return int(Failure.NOT_SUPPORTED)
    if _NOT_FOUND.search(message):
        return int(Failure.NOT_FOUND)
    if _SITE_TROUBLE.search(message.strip()):
        return int(Failure.UNAVAILABLE)
    return int(Failure.UNBUILDABLE)


def to_launch_event(data: dict[str, Any]) -> LaunchEvent:
    """One BinderHub event as a :class:`LaunchEvent`, keeping every field BinderHub sent.

    A phase we do not know becomes ``waiting`` (with the original in ``binderhub_phase``)
    rather than ending the launch; fields of the wrong type are dropped, not fatal.
    """
    fields = {k: v for k, v in data.items() if k not in BROKER_FIELDS}
    phase = fields.get("phase")
    if phase not in KNOWN_PHASES:
        fields["binderhub_phase"] = str(phase)
        fields["phase"] = "waiting"
    if not isinstance(fields.get("message", ""), str):
        fields["message"] = str(fields["message"])
    if fields["phase"] == "failed":
        code = fields.get("status_code")
        fields["status_code"] = failure_status(fields.get("message", ""), code if isinstance(code, int) else None)
    try:
        return LaunchEvent.model_validate(fields)
    except ValidationError:
        # Keep what matters for the launch to go on; the odd field is not worth a failure.
        keep = {k: fields[k] for k in ("phase", "message", "status_code") if k in fields}
        return LaunchEvent.model_validate(keep)


def server_user(url: str | None) -> str | None:
    """The JupyterHub user name in a ``ready`` url (``.../user/<name>/``), if there is one."""
    if not url:
        return None
    match = _USER_PATH.search(urlsplit(url).path)
    return unquote(match.group(1)) if match else None


@dataclass(frozen=True)
class BinderHubHealth:
    """BinderHub's ``/health`` answer, read."""

    ok: bool
    checks: list[HealthCheck]
    pod_quota: dict[str, Any] | None


def parse_health(status: int, body: Any) -> BinderHubHealth:
    """Turn ``/health`` (200 or 503, same JSON shape) into checks.

    BinderHub marks some checks ``_ignore_failure`` (informational: the Pod quota
    check when the hub is full). Those do not make the member unhealthy here either;
    a full hub shows up in capacity instead. The reported value stays in ``detail``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("checks"), list):
        check = HealthCheck(service="BinderHub", ok=False, detail={"error": f"/health answered HTTP {status} without checks"})
        return BinderHubHealth(ok=False, checks=[check], pod_quota=None)
    ok = bool(body.get("ok")) and status < 500
    checks = [HealthCheck(service="BinderHub", ok=ok, detail={"status": status})]
    pod_quota = None
    for raw in body["checks"]:
        if not isinstance(raw, dict):
            continue
        service = str(raw.get("service", "unknown"))[:100]
        ignored = bool(raw.get("_ignore_failure"))
        detail = {k: v for k, v in raw.items() if k not in ("service", "ok", "_ignore_failure")}
        if ignored:
            detail.update(informational=True, reported_ok=bool(raw.get("ok")))
        checks.append(HealthCheck(service=service, ok=bool(raw.get("ok")) or ignored, detail=detail))
        if service == POD_QUOTA_SERVICE:
            pod_quota = raw
    return BinderHubHealth(ok=ok, checks=checks, pod_quota=pod_quota)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def quota_capacity(pod_quota: dict[str, Any]) -> Capacity | None:
    """Capacity from the Pod quota check: quota → total, user_pods → used, build_pods → building.

    None when the check has no quota (BinderHub reports ``quota: null`` when unlimited).
    """
    total = _count(pod_quota.get("quota"))
    if total is None:
        return None
    used = _count(pod_quota.get("user_pods"))
    if used is None:
        used = _count(pod_quota.get("total_pods")) or 0
    return Capacity(total=total, used=used, building=_count(pod_quota.get("build_pods")) or 0)


def versions_of(body: Any) -> dict[str, str]:
    """``/versions`` as flat strings: ``binderhub`` and ``builder.<key>`` for builder_info."""
    if not isinstance(body, dict):
        return {}
    versions = {"binderhub": str(body["binderhub"])} if "binderhub" in body else {}
    builder = body.get("builder_info")
    if isinstance(builder, dict):
        versions.update({f"builder.{k}": str(v) for k, v in builder.items()})
    elif builder is not None:
        versions["builder"] = str(builder)
    return versions
