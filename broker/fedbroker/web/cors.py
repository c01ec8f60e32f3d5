"""CORS for the Binder API, as mybinder.org answers it: one rule for every launch answer.

Pages on other origins launch against the broker: thebe and Jupyter Book open
``/build/...`` as an EventSource, ``@jupyterhub/binderhub-client`` fetches it, and the launch
page reads ``/api/v1/route``. In redirect mode the browser also checks the ``307``: a
cross-origin redirect without ``Access-Control-Allow-Origin`` is a network error.

``cors_allow_origins`` decides: ``["*"]`` (the default, as mybinder.org's redirector and
BinderHub's ``cors_allow_origin`` do) answers ``*``, for any page; a list of origins answers
the page's own origin when it is listed (with ``Vary: Origin``) and nothing otherwise; an empty
list turns cross-origin launches off. No credentials are ever allowed: launches need none.
The headers are added when the response is prepared, so event streams get them too.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import CONFIG

# The launch API: what a page on another origin may call.
CORS_PREFIXES = ("/build/", "/v2/", "/api/v1/route")
PREFLIGHT_MAX_AGE = "600"


def allow_origin(origin: str | None, allowed: list[str]) -> dict[str, str]:
    """The ``Access-Control-Allow-Origin`` headers for a request from ``origin``."""
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    if origin and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def cors_headers(request: web.Request) -> dict[str, str]:
    return allow_origin(request.headers.get("Origin"), request.app[CONFIG].cors_allow_origins)


def preflight(request: web.Request) -> web.Response:
    """The answer to an ``OPTIONS`` preflight: the methods and the headers asked for, when the origin is allowed."""
    headers = cors_headers(request)
    if headers:
        headers.update({
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "Accept")[:512],
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        })
    return web.Response(status=204, headers=headers)


def setup_cors(app: web.Application) -> None:
    """CORS headers on every answer of the launch API (errors and 307s too), added as it is prepared."""
    allowed = app[CONFIG].cors_allow_origins
    # Read once: this runs for every answer, and the settings do not change while the app runs.
    everyone = allow_origin(None, allowed) if "*" in allowed else None

    async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        if not request.path.startswith(CORS_PREFIXES) or "Access-Control-Allow-Origin" in response.headers:
            return
        response.headers.update(everyone or allow_origin(request.headers.get("Origin"), allowed))

    app.on_response_prepare.append(add_cors_headers)
