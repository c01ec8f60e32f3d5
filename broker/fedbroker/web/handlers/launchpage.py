"""The HTML launch page at ``/v2/{provider}/{spec}`` (relay mode).

The page (``templates/launch.html`` and ``static/launch.js``) opens ``/build/...`` as an
event stream, shows progress, the build log, which member serves the launch and why (from
``/api/v1/route``) and any failover, then goes to ``url + (urlpath or 'tree') + '?token='``
(``labpath`` gives ``lab/tree/<labpath>``), as BinderHub does. The route and the query
parameters (``urlpath``, ``labpath``, repeatable ``data``) are the contract.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from fedproto.errors import SpecError
from fedproto.repospec import RepoSpec

from ...appkeys import PAGES
from ..htmlpage import Markup, esc, json_for_script
from .frontdoor import parse_target, raw_spec


def launch_urlpath(query: "web.MultiDictProxy[str]") -> str:
    """Where to go in the server: ``urlpath``, or ``lab/tree/<labpath>``; empty means the default."""
    if query.get("urlpath"):
        return query["urlpath"]
    if query.get("labpath"):
        return "lab/tree/" + query["labpath"].lstrip("/")
    return ""


PROVIDER_NAMES = {"gh": "GitHub", "gl": "GitLab", "gist": "Gist", "git": "Git", "zenodo": "Zenodo",
                  "figshare": "Figshare", "hydroshare": "HydroShare", "dataverse": "Dataverse", "ckan": "CKAN"}


def display_name(repo: RepoSpec) -> str:
    """What the page calls the repository: its owner/name, or the last part of a plain git URL."""
    if repo.provider != "git":
        return repo.repo
    tail = repo.repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return tail or repo.repo_url


def _repo_link(repo: RepoSpec) -> Markup:
    # Only http(s) URLs become links: a file:// URL (development brokers) is shown as text.
    url = esc(repo.repo_url)
    where = f'<a href="{url}" rel="noopener noreferrer">{url}</a>' if repo.repo_url.startswith(("https://", "http://")) \
        else f"<code>{url}</code>"
    ref = f" at <code>{esc(repo.ref)}</code>" if repo.ref not in ("", "HEAD") else ""
    return Markup(f"{esc(PROVIDER_NAMES.get(repo.provider, repo.provider))} · {where}{ref}")


def _page_config(request: web.Request, repo: RepoSpec, data: list[str]) -> dict[str, object]:
    query = urlencode([("data", d) for d in data])
    route_query = urlencode([("provider", repo.provider), ("spec", repo.spec), *[("data", d) for d in data]])
    return {
        "build_url": f"/build/{repo.provider}/{raw_spec(request, 'v2')}" + (f"?{query}" if query else ""),
        "route_url": f"/api/v1/route?{route_query}",
        "urlpath": launch_urlpath(request.query),
        "provider": repo.provider,
        "spec": repo.spec,
        "data": data,
    }


async def launch_page(request: web.Request) -> web.Response:
    pages = request.app[PAGES]
    try:
        repo, data = parse_target(request, "v2")
    except SpecError as exc:
        status = 404 if exc.reason == "unknown_provider" else 400
        return pages.response("error", status=status, title="Cannot launch this", heading="Cannot launch this",
                              message=exc.message)
    return pages.response(
        "launch", title=f"Launching {repo.provider}/{repo.spec}", script="launch.js",
        config=json_for_script(_page_config(request, repo, data)),
        title_text=display_name(repo), repo_link=_repo_link(repo),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/{provider}/{spec:.+}", launch_page)
