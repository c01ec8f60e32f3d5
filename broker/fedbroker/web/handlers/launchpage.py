"""The HTML launch page at ``/v2/{provider}/{spec}`` (relay mode, and redirect mode for agent-backed members).

The page (``templates/launch.html`` and ``static/launch.js``) opens ``/build/...`` as an
event stream, shows progress, the build log, which member serves the launch and why (from
``/api/v1/route``) and any failover, then goes to ``url + (urlpath or 'tree') + '?token='``
(``labpath`` gives ``lab/tree/<labpath>``), as BinderHub does. The route and the query
parameters (``urlpath``, ``labpath``, repeatable ``data``) are the contract.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from aiohttp import web

from fedproto.errors import SpecError
from fedproto.providers import PROVIDERS_BY_PREFIX
from fedproto.repospec import RepoSpec

from ...appkeys import PAGES
from ..htmlpage import HTML_HEADERS
from .frontdoor import parse_target, raw_spec


def launch_urlpath(query: "web.MultiDictProxy[str]") -> str:
    """Where to go in the server: ``urlpath``, or ``lab/tree/<labpath>``; empty means the default."""
    if query.get("urlpath"):
        return query["urlpath"]
    if query.get("labpath"):
        return "lab/tree/" + query["labpath"].lstrip("/")
    return ""


def display_name(repo: RepoSpec) -> str:
    """What the page calls the repository: its owner/name, or the last part of a plain git URL."""
    if repo.provider != "git":
        return repo.repo
    tail = repo.repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return tail or repo.repo_url


def _page_config(request: web.Request, repo: RepoSpec, data: list[str], build_url: str | None) -> dict[str, object]:
    query = urlencode([("data", d) for d in data])
    route_query = urlencode([("provider", repo.provider), ("spec", repo.spec), *[("data", d) for d in data]])
    relayed = f"/build/{repo.provider}/{raw_spec(request, 'v2')}" + (f"?{query}" if query else "")
    return {
        "build_url": build_url or relayed,
        "route_url": f"/api/v1/route?{route_query}",
        "urlpath": launch_urlpath(request.query),
        "provider": repo.provider,
        "spec": repo.spec,
        "data": data,
    }


V2_FORM = "/v2/<provider>/<repository>/<ref>, for example /v2/gh/binder-examples/requirements/HEAD"


def error_page(request: web.Request, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The "Cannot launch this" page: what a browser gets for any launch link that cannot launch."""
    return request.app[PAGES].response("error", status=status, title="Cannot launch this", heading="Cannot launch this",
                                       message=message, headers=headers)


def _connect_csp(build_url: str) -> dict[str, str]:
    """The pages' CSP, letting the page open its event stream on the agent the launch was redirected to."""
    parts = urlsplit(build_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    csp = HTML_HEADERS["Content-Security-Policy"].replace("connect-src 'self'", f"connect-src 'self' {origin}")
    return {"Content-Security-Policy": csp}


def render_launch_page(
    request: web.Request, repo: RepoSpec, data: list[str], *, build_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The launch page for ``repo``; its event stream is ``build_url`` (a ticketed agent URL) or the broker's /build."""
    extra = {**(headers or {}), **(_connect_csp(build_url) if build_url else {})}
    return request.app[PAGES].response(
        "launch", title=f"Launching {repo.provider}/{repo.spec}", script="launch.js",
        config=_page_config(request, repo, data, build_url), title_text=display_name(repo), repo=repo,
        provider_name=PROVIDERS_BY_PREFIX[repo.provider].name, headers=extra,
    )


async def launch_page(request: web.Request) -> web.Response:
    try:
        repo, data = parse_target(request, "v2")
    except SpecError as exc:
        return error_page(request, 404 if exc.reason == "unknown_provider" else 400, exc.message)
    return render_launch_page(request, repo, data)


async def bad_v2_url(request: web.Request) -> web.Response:
    """Any other ``/v2`` URL (``/v2/``, ``/v2/gh``, ``/v2/gh/``): the same page, saying what a launch link looks like."""
    return error_page(request, 404, f"This is not a Binder launch link. A launch link looks like {V2_FORM}.")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/{provider}/{spec:.+}", launch_page)
