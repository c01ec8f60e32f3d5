"""A JupyterHub REST API client: the handful of calls the ``jupyterhub`` backend makes, with their errors.

Every call has a timeout; failures are :class:`HubError` carrying the status code a
launch should fail with (503 when the hub cannot be reached, 502 when it answers
something unexpected), so the backend maps them without looking at aiohttp.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp

from fedproto.tls import describe_failure

from .sse import json_or_none

PAGINATION = "application/jupyterhub-pagination+json"


class HubError(Exception):
    """A hub call that failed; ``status_code`` is what the launch fails with, ``hub_status`` what the hub said."""

    def __init__(self, message: str, *, status_code: int = 502, hub_status: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.hub_status = hub_status


def user_path(name: str, *rest: str) -> str:
    return "/".join(["users", quote(name, safe=""), *rest])


class HubAPI:
    """Calls to ``{api_url}/...`` with a service token."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, token: str, timeout: float) -> None:
        self._session = session
        self._base = api_url.rstrip("/")
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...] = (200,), accept: str | None = None) -> tuple[int, Any]:
        """One request; returns (status, parsed body) when the status is in ``ok``."""
        headers = dict(self._headers, **({"Accept": accept} if accept else {}))
        url = f"{self._base}/{path}" if path else f"{self._base}/"
        try:
            async with self._session.request(method, url, json=json, headers=headers, timeout=self._timeout) as resp:
                body = json_or_none(await resp.text())
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise HubError(f"JupyterHub at {self._base} is unreachable: {describe_failure(exc)}", status_code=503) from None
        if resp.status not in ok:
            message = body.get("message") if isinstance(body, dict) else None
            code = 503 if resp.status == 503 else 502
            raise HubError(f"JupyterHub answered {method} {path or '/'} with HTTP {resp.status}: {message or 'no message'}", status_code=code, hub_status=resp.status)
        return resp.status, body

    async def version(self) -> str:
        _, body = await self.call("GET", "")
        return str(body.get("version", "unknown")) if isinstance(body, dict) else "unknown"

    async def whoami(self) -> dict[str, Any]:
        _, body = await self.call("GET", "user")
        return body if isinstance(body, dict) else {}

    async def create_user(self, name: str) -> None:
        await self.call("POST", user_path(name), ok=(201,))

    async def start_server(self, name: str, user_options: dict[str, Any]) -> None:
        await self.call("POST", user_path(name, "server"), json=user_options, ok=(201, 202))

    async def create_token(self, name: str, *, note: str, expires_in: int, scopes: list[str] | None) -> str:
        body: dict[str, Any] = {"note": note, "expires_in": expires_in}
        if scopes is not None:
            body["scopes"] = scopes
        _, answer = await self.call("POST", user_path(name, "tokens"), json=body, ok=(200, 201))
        if not isinstance(answer, dict) or not answer.get("token"):
            raise HubError("JupyterHub created a token but did not return it")
        return str(answer["token"])

    async def token_notes(self, name: str) -> list[str]:
        """The notes of the user's API tokens (the backend writes the launch id in one)."""
        _, body = await self.call("GET", user_path(name, "tokens"))
        tokens = body.get("api_tokens", []) if isinstance(body, dict) else body if isinstance(body, list) else []
        return [str(t.get("note") or "") for t in tokens if isinstance(t, dict)]

    async def stop_server(self, name: str) -> int:
        """202 (stopping), 204 (stopped), 404 (no such user/server), 400 (busy spawning or stopping)."""
        status, _ = await self.call("DELETE", user_path(name, "server"), ok=(202, 204, 400, 404))
        return status

    async def delete_user(self, name: str) -> int:
        """204 (deleted), 404 (already gone), 400 (a server is still spawning or stopping)."""
        status, _ = await self.call("DELETE", user_path(name), ok=(204, 400, 404))
        return status

    async def active_users(self, page_size: int = 200) -> list[dict[str, Any]]:
        """Users with an active (running or pending) server, through every page."""
        users: list[dict[str, Any]] = []
        offset = 0
        while True:
            _, body = await self.call("GET", f"users?state=active&offset={offset}&limit={page_size}", accept=PAGINATION)
            if isinstance(body, list):  # a hub older than 2.0 ignores pagination and answers a list
                return body
            items = body.get("items", []) if isinstance(body, dict) else []
            users.extend(items)
            following = (body.get("_pagination") or {}).get("next") if isinstance(body, dict) else None
            if not following or not items:
                return users
            offset = int(following.get("offset", offset + len(items)))

    @asynccontextmanager
    async def progress(self, name: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """The spawn progress event stream; the caller reads it with its own deadline."""
        url = f"{self._base}/{user_path(name, 'server', 'progress')}"
        headers = dict(self._headers, Accept="text/event-stream")
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout.total)
        try:
            response = await self._session.get(url, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise HubError(f"JupyterHub progress stream unreachable: {describe_failure(exc)}", status_code=503) from None
        try:
            if response.status != 200:
                raise HubError(f"JupyterHub progress stream answered HTTP {response.status}", hub_status=response.status)
            yield response
        finally:
            response.close()
