"""The Kubernetes API calls of the ``kubernetes`` backend, through kubernetes-asyncio, as plain values.

kubernetes-asyncio is an optional extra: it is imported here, and this module only
by ``backends/kubernetes.py``, which the agent imports only when ``kind = "kubernetes"``.
Pods come back as small dicts (name, phase, ready, waiting reason, creation time)
so the backend's decisions do not depend on the client's model classes. Every
error becomes :class:`KubeError` with the status a launch should fail with.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException


class KubeError(Exception):
    """A Kubernetes call that failed; ``status_code`` is what a launch fails with."""

    def __init__(self, message: str, *, status_code: int = 503) -> None:
        super().__init__(message)
        self.status_code = status_code


def _pod_state(pod: Any) -> dict[str, Any]:
    status = pod.status
    conditions = (status.conditions or []) if status else []
    waiting = [c.state.waiting.reason for c in (status.container_statuses or []) if c.state and c.state.waiting] if status else []
    return {
        "name": pod.metadata.name,
        "phase": (status.phase if status else None) or "Pending",
        "ready": any(c.type == "Ready" and c.status == "True" for c in conditions),
        "waiting_reason": waiting[0] if waiting else None,
        "created": pod.metadata.creation_timestamp if isinstance(pod.metadata.creation_timestamp, datetime) else None,
    }


class KubeAPI:
    """CoreV1 calls in one namespace, with a per-call timeout."""

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

    async def _call(self, method: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        core = client.CoreV1Api(await self._api())
        try:
            return await getattr(core, method)(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            code = 429 if exc.status == 403 and "exceeded quota" in str(exc.body) else 503 if exc.status in (0, 500, 503, 504) else 502
            raise KubeError(f"Kubernetes {method} failed with HTTP {exc.status}: {exc.reason}", status_code=code) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise KubeError(f"Kubernetes API unreachable ({method}): {exc.__class__.__name__}", status_code=503) from None

    async def version(self) -> str:
        try:
            info = await client.VersionApi(await self._api()).get_code(_request_timeout=self._timeout)
        except (ApiException, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise KubeError(f"Kubernetes API unreachable: {exc.__class__.__name__}") from None
        return str(info.git_version)

    async def list_pods(self, label_selector: str) -> list[dict[str, Any]]:
        pods = await self._call("list_namespaced_pod", self.namespace, label_selector=label_selector)
        return [_pod_state(p) for p in pods.items]

    async def read_pod(self, name: str) -> dict[str, Any]:
        return _pod_state(await self._call("read_namespaced_pod", name, self.namespace))

    async def create_pod(self, manifest: dict[str, Any]) -> None:
        await self._call("create_namespaced_pod", self.namespace, manifest)

    async def create_service(self, manifest: dict[str, Any]) -> None:
        await self._call("create_namespaced_service", self.namespace, manifest)

    async def delete_pod(self, name: str) -> bool:
        """False when there was no such pod (already gone counts as done)."""
        return await self._call("delete_namespaced_pod", name, self.namespace, grace_period_seconds=5, missing_ok=True) is not None

    async def delete_service(self, name: str) -> bool:
        return await self._call("delete_namespaced_service", name, self.namespace, missing_ok=True) is not None

    async def list_services(self, label_selector: str) -> list[str]:
        services = await self._call("list_namespaced_service", self.namespace, label_selector=label_selector)
        return [s.metadata.name for s in services.items]

    async def quota_pods(self) -> int | None:
        """The lowest ``pods`` hard limit of the namespace's ResourceQuotas, or None without one."""
        quotas = await self._call("list_namespaced_resource_quota", self.namespace)
        limits = []
        for quota in quotas.items:
            hard = (quota.status.hard if quota.status and quota.status.hard else None) or (quota.spec.hard if quota.spec else None) or {}
            if "pods" in hard:
                limits.append(int(str(hard["pods"])))
        return min(limits) if limits else None
