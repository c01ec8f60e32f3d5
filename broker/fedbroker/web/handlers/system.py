"""``/health``, ``/versions``, ``/metrics`` and ``/.well-known/jwks.json``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from fedproto import PROTOCOL_VERSION, __version__

from ...appkeys import HEALTH, KEYRING, METRICS, SNAPSHOT
from ..summary import health_report

routes = web.RouteTableDef()

RETRY_AFTER = "10"


@routes.get("/health", allow_head=True)
async def health(request: web.Request) -> web.Response:
    """BinderHub's shape; 503 with Retry-After when no member can take a launch."""
    report = health_report(request.app[SNAPSHOT].current, request.app[HEALTH].views())
    if report["ok"]:
        return web.json_response(report)
    return web.json_response(report, status=503, headers={"Retry-After": RETRY_AFTER})


@routes.get("/versions")
async def versions(request: web.Request) -> web.Response:
    # "binderhub" is what BinderHub clients read; we are not one, so say what we are.
    return web.json_response({
        "binderhub": f"binder-federation-{__version__}",
        "builder_info": {},
        "federation": __version__,
        "protocol": PROTOCOL_VERSION,
    })


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[KEYRING].public_set().to_jwks())
