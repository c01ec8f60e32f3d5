"""Redirect mode's front door: ``/build`` and ``/v2`` send the browser to launch on a member itself.

One decision per launch, made by the dispatcher as in relay mode (admission, ranking, the
decision log). The browser goes to the first routable candidate that can take browsers
(:mod:`fedbroker.launch.redirect`), or to the member named by the sticky cookie while that one
is still routable and can:

* ``/build``: ``307`` to the member's BinderHub ``/build`` (same path and query), or to its
  agent's ``/build`` with a launch ticket. The 307 carries the CORS headers (browsers check
  them on each hop) and the sticky cookie.
* ``/v2``: ``307`` to the member's BinderHub ``/v2`` page; for an agent-backed member the
  broker's own launch page, whose event stream is the agent's ticketed ``/build`` (so the
  same decision serves the page, and failover is the next click).

Refusals answer as in relay mode: a ``failed`` event on ``/build``, the HTML error page on
``/v2``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from aiohttp import web

from fedproto.errors import SpecError
from fedproto.launch import LaunchEvent
from fedproto.repospec import RepoSpec
from fedproto.routing import RouteDecision

from ...appkeys import CONFIG, DISPATCHER, HEALTH, TICKETS
from ...launch.redirect import RedirectTarget, TicketedLaunch, first_target
from ...routing.dispatcher import nothing_routable_message
from .frontdoor import DECISION_HEADER, one_event, parse_target, raw_spec
from .launchpage import error_page, render_launch_page


@dataclass(slots=True)
class _Plan:
    """Where one redirected launch goes, or why it goes nowhere."""

    headers: dict[str, str] = field(default_factory=dict)
    refusal: LaunchEvent | None = None
    repo: RepoSpec | None = None
    data: list[str] = field(default_factory=list)
    decision: RouteDecision | None = None
    target: RedirectTarget | None = None
    client_ip: str | None = None


def _plan(request: web.Request, prefix: str) -> _Plan:
    plan = _Plan()
    try:
        plan.repo, plan.data = parse_target(request, prefix)
    except SpecError as exc:
        plan.refusal = LaunchEvent(phase="failed", status_code=404 if exc.reason == "unknown_provider" else 400,
                                   message=exc.message + "\n")
        return plan
    app = request.app
    dispatcher, config = app[DISPATCHER], app[CONFIG]
    ip = plan.client_ip = dispatcher.client_ip(request.headers, request.remote)
    admission = dispatcher.admit(plan.repo.provider, plan.repo.spec, ip)
    if admission.rate is not None:
        plan.headers.update(admission.rate.headers())
    if admission.refusal is not None:
        plan.refusal = LaunchEvent(phase="failed", status_code=admission.status, message=admission.refusal)
        return plan
    # Counted below, against the member the browser is actually sent to (provisional load).
    plan.decision = dispatcher.decide(plan.repo, plan.data, region=dispatcher.client_region(request.headers),
                                      client_ip=ip, count=False)
    plan.headers[DECISION_HEADER] = plan.decision.decision_id
    # No Cookie header (most first launches): nothing to parse.
    sticky = request.cookies.get(config.routing.cookie_name) if "Cookie" in request.headers else None
    keep = sticky is not None and plan.decision.chosen is not None and dispatcher.routable(
        sticky, plan.repo.provider, plan.decision)
    health = app[HEALTH]
    order = [sticky] if keep and sticky else []
    # One member's view at a time: views() would copy the whole table, which each launch changes.
    plan.target = first_target([*order, *plan.decision.routable_ids()], dispatcher.snapshot(),
                               lambda member_id: view.ad if (view := health.view(member_id)) else None,
                               dev=config.dev)
    if plan.target is None:
        message = nothing_routable_message(plan.decision) if plan.decision.chosen is None else (
            "No member that can take this launch accepts browsers directly right now. Please try again later.")
        plan.refusal = LaunchEvent(phase="failed", status_code=503, message=message + "\n")
        plan.headers["Retry-After"] = "30"
    else:
        dispatcher.launched(plan.target.member_id, plan.repo)
    return plan


def _ticketed(request: web.Request, plan: _Plan, prefix: str) -> str:
    assert plan.repo is not None and plan.target is not None and plan.decision is not None
    launch = TicketedLaunch(
        provider=plan.repo.provider, raw_spec=raw_spec(request, prefix), data=tuple(plan.data),
        query=tuple(request.query.items()), decision_id=plan.decision.decision_id,
        client_ip=plan.client_ip, origin=request.headers.get("Origin"),
    )
    return request.app[TICKETS].build_url(plan.target, launch)


_PROBE = "MEMBER"


@functools.lru_cache(maxsize=8)
def _sticky_cookie(name: str, max_age: int, secure: bool) -> tuple[str, str]:
    """The ``Set-Cookie`` value around the member id, as aiohttp's ``set_cookie`` writes it (asked once
    per setting: through ``http.cookies`` it costs more than the rest of the 307 together). Member ids
    are DNS labels, which a cookie value carries unquoted."""
    probe = web.StreamResponse()
    probe.set_cookie(name, _PROBE, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=secure)
    head, _, tail = probe.cookies[name].OutputString().partition(f"={_PROBE}")  # a name holds no '='
    return f"{head}=", tail


def _redirect(request: web.Request, plan: _Plan, location: str) -> web.Response:
    assert plan.target is not None
    config = request.app[CONFIG]
    head, tail = _sticky_cookie(config.routing.cookie_name, config.routing.cookie_max_age,
                                config.public_url.startswith("https://"))
    plan.headers["Location"] = location
    plan.headers["Set-Cookie"] = f"{head}{plan.target.member_id}{tail}"
    return web.Response(status=307, headers=plan.headers)


async def build_redirect(request: web.Request) -> web.StreamResponse:
    """``/build`` in redirect mode: 307 to where the browser launches, or a ``failed`` event."""
    plan = _plan(request, "build")
    if plan.refusal is not None:
        return await one_event(request, plan.refusal, plan.headers)
    assert plan.target is not None
    if plan.target.kind == "binderhub":
        return _redirect(request, plan, plan.target.base + request.raw_path)
    return _redirect(request, plan, _ticketed(request, plan, "build"))


async def v2_redirect(request: web.Request) -> web.Response:
    """``/v2`` in redirect mode: the member's BinderHub page, or the launch page streaming from the agent."""
    plan = _plan(request, "v2")
    if plan.refusal is not None:
        status = plan.refusal.status_code or 400
        return error_page(request, status, plan.refusal.message.strip(), plan.headers)
    assert plan.target is not None and plan.repo is not None
    if plan.target.kind == "binderhub":
        return _redirect(request, plan, plan.target.base + request.raw_path)
    return render_launch_page(request, plan.repo, plan.data, build_url=_ticketed(request, plan, "v2"),
                              headers=plan.headers)
