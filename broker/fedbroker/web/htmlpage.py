"""Server-rendered HTML pages: templates from ``templates/``, a shared layout, escaping by default.

A deliberately tiny mechanism (``string.Template``) so the pages need no build step and no
template engine. Every value passed to :meth:`PageTemplates.render` is HTML-escaped unless it
is wrapped in :class:`Markup`, which only the page modules do, for fragments they built from
escaped parts and for JSON made safe by :func:`json_for_script`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

from fedproto import __version__

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
HTML_HEADERS = {
    # The pages load nothing from elsewhere; saying so stops injected markup from loading anything either.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Markup(str):
    """A string that is already safe HTML: :meth:`PageTemplates.render` inserts it as it is."""


def esc(value: object) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attribute values)."""
    return html.escape(str(value), quote=True)


def json_for_script(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` can end the element."""
    text = json.dumps(value, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _escaped(values: dict[str, object]) -> dict[str, str]:
    return {k: v if isinstance(v, Markup) else esc(v) for k, v in values.items()}


class PageTemplates:
    """Every page template, read once, each rendered inside ``layout.html``."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._templates = {p.stem: Template(p.read_text(encoding="utf-8")) for p in directory.glob("*.html")}
        if "layout" not in self._templates:
            raise FileNotFoundError(f"no layout.html in {directory}")

    def render(self, name: str, *, title: str, nav: str = "", script: str = "", **values: object) -> str:
        """The page ``name`` with ``values`` (escaped unless :class:`Markup`) inside the layout.

        ``nav`` names the current navigation entry (``home`` or ``status``); ``script`` is the
        file under ``/static/`` the page loads, if any.
        """
        body = self._templates[name].substitute(_escaped(values))
        current = {key: Markup(' aria-current="page"') if key == nav else Markup("") for key in ("home", "status")}
        script_tag = Markup(f'<script src="/static/{esc(script)}" defer></script>') if script else Markup("")
        return self._templates["layout"].substitute(
            _escaped({"title": title, "version": __version__, "body": Markup(body), "script": script_tag,
                      "current_home": current["home"], "current_status": current["status"]})
        )

    def response(self, name: str, *, status: int = 200, headers: dict[str, str] | None = None, **kwargs: Any) -> web.Response:
        """:meth:`render` as an HTML response with the pages' security headers (``headers`` added)."""
        return web.Response(text=self.render(name, **kwargs), status=status, content_type="text/html",
                            headers={**HTML_HEADERS, **(headers or {})})
