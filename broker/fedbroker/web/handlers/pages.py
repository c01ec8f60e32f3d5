"""The human pages: home ``/`` (launch form and badge), ``/status``, the badge SVG and ``/static/``.

Handlers read the summary, call the renderer and answer; the page logic lives in the
templates, ``fedbroker.statuscards`` and the static JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ...appkeys import CLOCK, CONFIG, HEALTH, PAGES, SLO, SNAPSHOT
from ..htmlpage import STATIC_DIR, Markup, PageTemplates, esc, json_for_script
from ..statuscards import (
    STATUS_REFRESH_SECONDS,
    glance_html,
    markers_html,
    member_cards_html,
    summary_line,
)
from ..summary import federation_summary


@dataclass(frozen=True)
class Provider:
    """One choice of the launch form's provider menu, as BinderHub offers them."""

    prefix: str
    name: str
    label: str
    placeholder: str
    has_ref: bool = True


PROVIDERS = (
    Provider("gh", "GitHub", "GitHub repository name or URL", "binder-examples/requirements"),
    Provider("gist", "Gist", "Gist ID (username/gist id) or URL", "username/1a2b3c4d5e6f"),
    Provider("gl", "GitLab.com", "GitLab.com repository or URL", "group/project"),
    Provider("git", "Git repository", "Any git repository URL", "https://git.example.org/repo.git"),
    Provider("zenodo", "Zenodo DOI", "Zenodo DOI", "10.5281/zenodo.3242074", has_ref=False),
    Provider("figshare", "Figshare DOI", "Figshare DOI", "10.6084/m9.figshare.9782777.v1", has_ref=False),
    Provider("hydroshare", "HydroShare resource", "HydroShare resource id or DOI", "b8f6eae9d89241cf8b5904033460af61",
             has_ref=False),
    Provider("dataverse", "Dataverse DOI", "Dataverse DOI", "10.7910/DVN/TJCLKP", has_ref=False),
    Provider("ckan", "CKAN dataset", "CKAN dataset URL", "https://ckan.example.org/dataset/example", has_ref=False),
)


def provider_options() -> Markup:
    """The ``<option>``s, each carrying its label and placeholder for the form script."""
    return Markup("\n".join(
        f'        <option value="{esc(p.prefix)}" data-label="{esc(p.label)}" data-placeholder="{esc(p.placeholder)}" '
        f'data-ref="{"yes" if p.has_ref else "no"}"{" selected" if p.prefix == "gh" else ""}>{esc(p.name)}</option>'
        for p in PROVIDERS
    ))


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
        broker_url=broker_url, provider_options=provider_options(),
        repository_hint=("This development broker also takes file:// git URLs." if dev else
                         "For example owner/repository, or the repository's full URL."),
        badge_markdown=markdown, badge_rst=rst,
    )


async def status(request: web.Request) -> web.Response:
    summary = _summary(request)
    config = {"refresh_seconds": STATUS_REFRESH_SECONDS, "summary": summary}
    return request.app[PAGES].response(
        "status", title="Status", nav="status", script="status.js",
        config=json_for_script(config), summary_line=summary_line(summary),
        markers=markers_html(summary), members=member_cards_html(summary), glance=glance_html(summary),
    )


async def badge(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "badge_logo.svg", headers={"Cache-Control": "public, max-age=3600"})


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "logo.svg", headers={"Content-Type": "image/svg+xml"})


def add_routes(app: web.Application) -> None:
    """The pages, the badge and the static files (templates are read once, here)."""
    app[PAGES] = PageTemplates()
    app.router.add_get("/", home)
    app.router.add_get("/status", status)
    app.router.add_get("/badge_logo.svg", badge)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", STATIC_DIR)
