"""Routes to launched pods in configurable-http-proxy, driven through its REST API as JupyterHub drives it.

Why this proxy: the ready URL is ``{public_url}/{name}/`` and each path must
reach its own pod. configurable-http-proxy is what JupyterHub and BinderHub
already run for exactly this; its routes change with one API call (no Ingress
object per launch, no ingress controller reload, no extra RBAC), it proxies
websockets, and it records each route's last activity. The member chart runs it
beside the agent; only the agent may reach its API (a NetworkPolicy and a token).

Routes carry ``{"federation-member": <member id>}`` so the agent only ever touches
its own. The proxy keeps routes in memory: ``plan`` (pure) says what to add and
remove so a restarted proxy, or a pod gone while the agent was away, is put
right by the next check, as JupyterHub's ``Proxy.check_routes`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

MEMBER_KEY = "federation-member"


class ProxyError(Exception):
    """The proxy's API failed or could not be reached."""


def route_path(name: str) -> str:
    """The route of pod ``name``: the path prefix its server's ``base_url`` expects, without the final slash."""
    return f"/{name}"


def plan(wanted: dict[str, str], existing: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Routes to add or change (path -> target) and paths to delete."""
    add = {path: target for path, target in wanted.items() if existing.get(path) != target}
    remove = sorted(path for path in existing if path not in wanted)
    return add, remove


class ProxyRoutes:
    """This member's routes in one configurable-http-proxy."""

    def __init__(self, api_url: str, token: str, member_id: str, timeout: float) -> None:
        self.api_url = api_url.rstrip("/")
        self.member_id = member_id
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            async with self._client().request(method, f"{self.api_url}/api/routes{path}", json=body) as resp:
                if method == "DELETE" and resp.status == 404:
                    return None
                if resp.status >= 300:
                    raise ProxyError(f"proxy {method} {path or '/'} answered HTTP {resp.status}")
                return await resp.json() if method == "GET" else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise ProxyError(f"proxy API unreachable ({exc.__class__.__name__})") from None

    async def add(self, path: str, target: str) -> None:
        await self._call("POST", path, {"target": target, MEMBER_KEY: self.member_id})

    async def delete(self, path: str) -> None:
        await self._call("DELETE", path)

    async def routes(self) -> dict[str, str]:
        """This member's routes: path (no final slash) -> target."""
        answer = await self._call("GET", "") or {}
        return {path.rstrip("/") or "/": str(data.get("target")) for path, data in answer.items()
                if isinstance(data, dict) and data.get(MEMBER_KEY) == self.member_id}

    async def sync(self, wanted: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """Make the proxy hold exactly ``wanted`` of this member's routes; what it changed."""
        add, remove = plan(wanted, await self.routes())
        for path, target in add.items():
            await self.add(path, target)
        for path in remove:
            await self.delete(path)
        return add, remove
