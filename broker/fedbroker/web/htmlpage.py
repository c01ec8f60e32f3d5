"""Server-rendered HTML pages: Jinja2 templates from ``templates/``, escaping on for every value.

As JupyterHub and BinderHub render theirs. Every page extends ``layout.html``; values are
HTML-escaped by Jinja2's autoescaping, JSON for scripts goes through its ``tojson`` filter
(``<``, ``>``, ``&`` and ``'`` escaped, so it cannot end a ``<script>`` element), and an
undefined name is an error rather than an empty string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
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


class PageTemplates:
    """The page templates (read once and cached by Jinja2), each extending ``layout.html``."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["version"] = __version__
        self.env.get_template("layout.html")  # fail at startup, not on the first request

    def render(self, name: str, *, title: str, nav: str = "", script: str = "", **values: Any) -> str:
        """The page ``name`` (``templates/<name>.html``) with ``values``, escaped by autoescaping.

        ``nav`` names the current navigation entry (``home`` or ``status``); ``script`` is the
        file under ``/static/`` the page loads, if any.
        """
        return self.env.get_template(f"{name}.html").render(title=title, nav=nav, script=script, **values)

    def response(self, name: str, *, status: int = 200, headers: dict[str, str] | None = None, **kwargs: Any) -> web.Response:
        """:meth:`render` as an HTML response with the pages' security headers (``headers`` added)."""
        return web.Response(text=self.render(name, **kwargs), status=status, content_type="text/html",
                            headers={**HTML_HEADERS, **(headers or {})})
