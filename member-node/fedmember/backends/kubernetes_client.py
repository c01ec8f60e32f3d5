"""The Kubernetes API calls of the ``kubernetes`` backend, through kubernetes-asyncio, as plain JSON.

kubernetes-asyncio is an optional extra: it is imported here, and this module only
by the ``kubernetes*`` backend modules, which the agent imports only when
``kind = "kubernetes"``. The client loads the kubeconfig or in-cluster credentials
(and refreshes rotating service account tokens), but every call asks for the raw
response (``_preload_content=False``) and parses the JSON itself: building the
client's model objects for a 1,000-pod list costs over a second of CPU, a plain
``json.loads`` a few milliseconds. Watches are read as JSON lines. Every error
becomes :class:`KubeError` with the status a launch should fail with.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

# Methods of CoreV1Api by (verb, kind); the watch is the list method with watch=True.
_METHODS = {
    ("list", "pods"): "list_namespaced_pod",
    ("create", "pods"): "create_namespaced_pod",
    ("delete", "pods"): "delete_namespaced_pod",
    ("list", "secrets"): "list_namespaced_secret",
    ("create", "secrets"): "create_namespaced_secret",
    ("delete", "secrets"): "delete_namespaced_secret",
    ("list", "resourcequotas"): "list_namespaced_resource_quota",
}


class KubeError(Exception):
    """A Kubernetes call that failed; ``status_code`` is what a launch fails with, ``http_status`` what the API said."""

    def __init__(self, message: str, *, status_code: int = 503, http_status: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.http_status = http_status


def _launch_status(http_status: int, message: str) -> int:
    if http_status == 403 and "exceeded quota" in message:
        return 429
    return 503 if http_status in (0, 500, 503, 504) else 502


class KubeAPI:
    """CoreV1 calls in one namespace, with a per-call timeout, answering JSON dicts."""

    def __init__(self, kubeconfig: Path | None, context: str | None, namespace: str, timeout: float) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self.namespace = namespace
        self._timeout = timeout
        self._client: client.ApiClient | None = None

    async def _api(self) -> client.ApiClient:
        if self._client is None:
            configuration = client.Configuration()
            try:
                if self._kubeconfig is not None:
                    await config.load_kube_config(config_file=str(self._kubeconfig), context=self._context, client_configuration=configuration)
                else:
                    config.load_incluster_config(client_configuration=configuration)
            except (config.ConfigException, OSError) as exc:
                raise KubeError(f"cannot load the Kubernetes configuration: {exc}") from None
            self._client = client.ApiClient(configuration)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _open(self, verb: str, kind: str, *args: Any, timeout: Any = None, **kwargs: Any) -> aiohttp.ClientResponse:
        """The raw response of one call; a non-2xx answer is raised as KubeError."""
        method = _METHODS[(verb, kind)]
        core = client.CoreV1Api(await self._api())
        try:
            resp = await getattr(core, method)(*args, _preload_content=False, _request_timeout=timeout or self._timeout, **kwargs)
        except ApiException as exc:
            raise KubeError(f"Kubernetes {verb} {kind} failed: {exc.reason}", status_code=_launch_status(exc.status, str(exc.body)), http_status=exc.status) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise KubeError(f"Kubernetes API unreachable ({verb} {kind}): {exc.__class__.__name__}", status_code=503) from None
        if resp.status >= 300:
            try:
                message = str((await resp.json(content_type=None)).get("message", resp.reason))
            except (ValueError, aiohttp.ClientError, asyncio.TimeoutError):
                message = str(resp.reason)
            finally:
                resp.release()
            raise KubeError(f"Kubernetes {verb} {kind} failed with HTTP {resp.status}: {message}",
                            status_code=_launch_status(resp.status, message), http_status=resp.status)
        return resp

    async def _json(self, verb: str, kind: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> dict[str, Any] | None:
        try:
            resp = await self._open(verb, kind, *args, **kwargs)
        except KubeError as exc:
            if missing_ok and exc.http_status == 404:
                return None
            raise
        try:
            async with resp:
                return json.loads(await resp.read())
        except (ValueError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise KubeError(f"Kubernetes {verb} {kind}: unreadable answer ({exc.__class__.__name__})") from None

    async def version(self) -> str:
        try:
            info = await client.VersionApi(await self._api()).get_code(_request_timeout=self._timeout)
        except (ApiException, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise KubeError(f"Kubernetes API unreachable: {exc.__class__.__name__}") from None
        return str(info.git_version)

    async def list(self, kind: str, label_selector: str = "") -> dict[str, Any]:
        """The list object: ``items`` and ``metadata.resourceVersion``."""
        answer = await self._json("list", kind, self.namespace, label_selector=label_selector)
        assert answer is not None
        return answer

    async def watch(self, kind: str, label_selector: str, resource_version: str, timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``type``, ``object``) from ``resource_version`` until the server ends the stream."""
        resp = await self._open(
            "list", kind, self.namespace, label_selector=label_selector, watch=True, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=timeout_seconds,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=timeout_seconds + self._timeout),
        )
        async with resp:
            try:
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise KubeError(f"Kubernetes watch of {kind} broke: {exc.__class__.__name__}") from None
            except ValueError:
                raise KubeError(f"Kubernetes watch of {kind}: unreadable event") from None

    async def create(self, kind: str, manifest: dict[str, Any]) -> dict[str, Any]:
        answer = await self._json("create", kind, self.namespace, manifest)
        assert answer is not None
        return answer

    async def delete(self, kind: str, name: str, grace_period_seconds: int | None = None) -> bool:
        """False when there was no such object (already gone counts as done)."""
        extra = {} if grace_period_seconds is None else {"grace_period_seconds": grace_period_seconds}
        return await self._json("delete", kind, name, self.namespace, missing_ok=True, **extra) is not None
