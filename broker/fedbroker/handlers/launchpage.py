"""The HTML launch page at ``/v2/{provider}/{spec}`` (relay mode): a minimal placeholder.

It opens ``/build/...`` with EventSource and, on ``ready``, goes to
``url + (urlpath or 'tree') + '?token=' + token``. A fuller page replaces this module
and its template; the route and the query parameters (``urlpath``, ``labpath``,
repeatable ``data``) are the contract.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from urllib.parse import urlencode

from aiohttp import web

from fedproto.errors import SpecError

from .frontdoor import parse_target, raw_spec

TEMPLATE_PATH = Path(__file__).parent / "templates" / "launchpage.html"


def _js(value: str) -> str:
    # JSON is valid JavaScript; escaping '<' keeps a value from closing the <script> element.
    return json.dumps(value).replace("<", "\\u003c")


def launch_urlpath(query: "web.MultiDictProxy[str]") -> str:
    """Where to go in the server: ``urlpath``, or ``lab/tree/<labpath>``; empty means the default."""
    if query.get("urlpath"):
        return query["urlpath"]
    if query.get("labpath"):
        return "lab/tree/" + query["labpath"].lstrip("/")
    return ""


class LaunchPage:
    """Renders the page from its template (read once, when routes are set up)."""

    def __init__(self, template: Template) -> None:
        self._template = template

    @classmethod
    def load(cls) -> LaunchPage:
        return cls(Template(TEMPLATE_PATH.read_text()))

    async def get(self, request: web.Request) -> web.Response:
        try:
            repo, data = parse_target(request, "v2")
        except SpecError as exc:
            status = 404 if exc.reason == "unknown_provider" else 400
            return web.Response(status=status, text=f"{exc.message}\n", content_type="text/plain")
        query = urlencode([("data", d) for d in data])
        build_url = f"/build/{repo.provider}/{raw_spec(request, 'v2')}" + (f"?{query}" if query else "")
        body = self._template.substitute(
            title=html.escape(f"{repo.provider}/{repo.spec}"),
            build_url=_js(build_url),
            urlpath=_js(launch_urlpath(request.query)),
        )
        return web.Response(text=body, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/{provider}/{spec:.+}", LaunchPage.load().get)
