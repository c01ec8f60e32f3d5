"""The human pages: home ``/`` (launch form and badge), ``/status``, the badge SVG and ``/static/``.

Handlers read the summary, call the renderer and answer; the page logic lives in the
Jinja2 templates, ``fedbroker.web.statuscards`` and the static JavaScript.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fedproto.providers import PROVIDER_TABLE, provider_table

from ...appkeys import CLOCK, CONFIG, HEALTH, PAGES, SLO, SNAPSHOT
from ..htmlpage import STATIC_DIR, PageTemplates
from ..statuscards import STATUS_REFRESH_SECONDS, TEMPLATE_GLOBALS
from ..summary import federation_summary


def badge_texts(broker_url: str, launch_url: str) -> tuple[str, str]:
    """The README badge in Markdown and in reStructuredText."""
    badge = f"{broker_url}/badge_logo.svg"
    return f"[![Binder]({badge})]({launch_url})", f".. image:: {badge}\n   :target: {launch_url}"


def _summary(request: web.Request) -> dict[str, Any]:
    app = request.app
    return federation_summary(app[SNAPSHOT].current, app[HEALTH].views(), now=app[CLOCK].now(),
                              slo=app[SLO])


async def home(request: web.Request) -> web.Response:
    summary = _summary(request)
    broker_url = request.app[CONFIG].public_url.rstrip("/")
    markdown, rst = badge_texts(broker_url, f"{broker_url}/v2/gh/OWNER/REPOSITORY/HEAD")
    dev = request.app[CONFIG].dev
    return request.app[PAGES].response(
        "home", title="Launch", nav="home", script="home.js",
        members=len(summary["members"]), routable=summary["routable"],
        broker_url=broker_url, providers=PROVIDER_TABLE, provider_table=provider_table(),
        repository_hint=("This development broker also takes file:// git URLs." if dev else
                         "For example owner/repository, or the repository's full URL."),
        badge_markdown=markdown, badge_rst=rst,
    )


async def status(request: web.Request) -> web.Response:
    summary = _summary(request)
    return request.app[PAGES].response(
        "status", title="Status", nav="status", script="status.js",
        config={"refresh_seconds": STATUS_REFRESH_SECONDS}, summary=summary,
    )


async def badge(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "badge_logo.svg", headers={"Cache-Control": "public, max-age=3600"})


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "logo.svg", headers={"Content-Type": "image/svg+xml"})


def add_routes(app: web.Application) -> None:
    """The pages, the badge and the static files (templates are read once, here)."""
    pages = PageTemplates()
    pages.env.globals.update(TEMPLATE_GLOBALS)
    app[PAGES] = pages
    app.router.add_get("/", home)
    app.router.add_get("/status", status)
    app.router.add_get("/badge_logo.svg", badge)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", STATIC_DIR)
