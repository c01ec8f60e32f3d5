"""The ``kubernetes`` backend: runs a prebuilt image as a pod + service per launch, with kubernetes-asyncio.

Each launch creates, in ``namespace``:

* a Pod ``fed-<hash of the launch id>`` labelled ``app=binder-federation``,
  ``component=singleuser``, ``federation-member``, ``launch-id``, ``repo-hash``
  (plus ``extra_labels``), running ``jupyter server`` with a random token in the
  ``JUPYTER_TOKEN`` environment variable, non-root, no service account token,
  every configured dataset volume mounted read-only, and a readiness probe on
  ``{base_url}api/status``;
* a Service of the same name in front of it.

It waits (polling every ``poll_interval``, up to ``start_timeout``) for the pod to
be Running and Ready, then answers ``ready`` with ``url`` from ``url_template``
(default ``{public_url}/{name}/``: an ingress or proxy that routes the path
``/<name>/`` to the Service of that name, which jupyter-server expects as its
``base_url``) and the token. On any failure, and when the consumer goes away,
the pod and service are deleted. Deletes treat 404 as done.

The backend does not build: ``image_rules`` pick a prebuilt image by repo key,
else ``default_image``. Capacity: ``total`` is ``max_servers``, lowered to the
namespace's ResourceQuota ``pods`` hard limit when there is one; ``used`` and
``building`` count this member's Ready and not-yet-Ready pods.

Anyone who can read pods in the namespace can read the tokens: give the
backend a namespace of its own.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, ClassVar, Literal

from pydantic import Field

from fedproto.failures import Failure
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import PROVIDERS, RepoSpec
from fedproto.status import Capacity, HealthCheck, image_hash

from .base import Backend, BackendConfig, BackendContext, RepoRule, failed, first_match
from .kubernetes_client import KubeAPI, KubeError
from .kubernetes_pods import DatasetVolume, labels, object_name, pod_manifest, pods_to_cull, selector, service_manifest

log = logging.getLogger(__name__)

_STUCK_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError"})


class ImageRule(RepoRule):
    """Run repos whose key matches ``match`` with ``image``."""

    image: str = Field(description="The prebuilt image to run for those repos.")


class KubernetesConfig(BackendConfig):
    """Settings of the ``kubernetes`` backend."""

    kind: Literal["kubernetes"] = "kubernetes"
    namespace: str = Field(default="binder-federation", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Namespace the pods and services go in.")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig file; unset means in-cluster (the pod's service account).")
    kube_context: str | None = Field(default=None, description="Context inside the kubeconfig (default: its current context).")
    default_image: str = Field(default="quay.io/jupyter/base-notebook:latest", description="Image for repos no rule matches.")
    image_rules: list[ImageRule] = Field(default_factory=list, description="Repo → image rules, first match wins.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(default="IfNotPresent", description="The containers' imagePullPolicy.")
    url_template: str = Field(default="{public_url}/{name}/", description="Server URL; {public_url} (the member's), {name}, {namespace}.")
    base_url_template: str = Field(default="/{name}/", description="jupyter-server's base_url; must match the path the ingress routes.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(default="ClusterIP", description="Type of each launch's Service.")
    server_port: int = Field(default=8888, ge=1, le=65535, description="Port jupyter-server listens on in the pod.")
    max_servers: int = Field(default=10, ge=0, description="Servers this member runs at once (a ResourceQuota may lower it).")
    start_timeout: float = Field(default=300.0, gt=0, description="Seconds for a pod to become Ready before the launch fails with 504.")
    poll_interval: float = Field(default=1.0, gt=0, description="Seconds between pod status reads while starting.")
    request_timeout: float = Field(default=10.0, gt=0, description="Seconds for each Kubernetes API call.")
    resources: dict[str, dict[str, str]] = Field(default_factory=dict, description="The container's resources (requests/limits).")
    dataset_volumes: dict[str, DatasetVolume] = Field(default_factory=dict, description="Dataset name → volume, mounted read-only in every server.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of the pods.")
    extra_labels: dict[str, str] = Field(default_factory=dict, description="More labels on pods and services.")
    run_as_user: int = Field(default=1000, ge=1, description="Non-root uid the server runs as.")
    max_age: float | None = Field(default=None, gt=0, description="Cull this member's pods older than this many seconds (unset: never).")
    cull_interval: float = Field(default=300.0, gt=0, description="Seconds between cull passes when max_age is set.")


class KubernetesBackend(Backend):
    """A pod + service per launch in one namespace. See the module docstring."""

    kind: ClassVar[str] = "kubernetes"
    providers: ClassVar[tuple[str, ...]] = PROVIDERS
    Config: ClassVar[type[BackendConfig]] = KubernetesConfig
    config: KubernetesConfig

    def __init__(self, config: BackendConfig, context: BackendContext) -> None:
        super().__init__(config, context)
        self._kube = KubeAPI(self.config.kubeconfig, self.config.kube_context, self.config.namespace, self.config.request_timeout)
        self._cull_task: asyncio.Task[None] | None = None
        self._version: str | None = None

    async def start(self) -> None:
        if self.config.max_age is not None:
            self._cull_task = asyncio.create_task(self._cull_loop(), name="kubernetes-cull")

    async def stop(self) -> None:
        if self._cull_task is not None:
            self._cull_task.cancel()
            await asyncio.gather(self._cull_task, return_exceptions=True)
            self._cull_task = None
        try:
            for name in {p["name"] for p in await self._kube.list_pods(selector(self.context.member_id))}:
                await self._delete(name)
            for name in await self._kube.list_services(selector(self.context.member_id)):
                await self._kube.delete_service(name)
        except KubeError as exc:
            log.warning("could not delete every server at shutdown: %s", exc)
        await self._kube.close()

    def _image(self, repo: RepoSpec) -> str:
        rule = first_match(self.config.image_rules, repo)
        return rule.image if rule is not None else self.config.default_image

    async def _total(self) -> int:
        hard = await self._kube.quota_pods()
        return self.config.max_servers if hard is None else min(self.config.max_servers, hard)

    async def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        try:
            pods = await self._kube.list_pods(selector(self.context.member_id))
            total = await self._total()
        except KubeError as exc:
            yield failed(str(exc), exc.status_code)
            return
        if len(pods) >= total:
            yield failed(f"all {total} servers of this member are in use", Failure.CAPACITY)
            return
        # aclosing: a consumer that goes away mid-launch gets the pod deleted now, not at GC.
        async with aclosing(self._run(request, repo)) as events:
            async for event in events:
                yield event

    async def _run(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        name, token = object_name(request.launch_id), secrets.token_urlsafe(24)
        ready = False
        try:
            yield LaunchEvent(phase="launching", message=f"Creating pod {name}...\n")
            await self._kube.create_pod(self._pod(request, repo, name, token))
            tags = labels(self.context.member_id, request.launch_id, image_hash(repo.key), self.config.extra_labels)
            await self._kube.create_service(service_manifest(name=name, labels=tags, port=self.config.server_port, service_type=self.config.service_type))
            async with aclosing(self._wait_ready(name)) as progress:
                async for event in progress:
                    yield event
            url = self.config.url_template.format(public_url=self.context.public_url.rstrip("/"), name=name, namespace=self.config.namespace)
            if not url.startswith(("https://", "http://")):
                raise KubeError(f"member misconfigured: url_template gives {url!r}, not an absolute URL (is public_url set?)")
            ready = True
            yield LaunchEvent(phase="ready", message=f"server running at {url}\n", url=url, token=token, image=self._image(repo), repo_url=repo.repo_url, binder_request=repo.binder_request)
        except KubeError as exc:
            yield failed(str(exc), exc.status_code)
        except asyncio.TimeoutError:
            yield failed(f"the pod was not ready within {self.config.start_timeout:.0f} s", Failure.TIMEOUT)
        finally:
            if not ready:
                await self._delete(name)

    def _pod(self, request: LaunchRequest, repo: RepoSpec, name: str, token: str) -> dict[str, Any]:
        origins = [o for o in self.context.cors_allow_origins if o]
        return pod_manifest(
            name=name, labels=labels(self.context.member_id, request.launch_id, image_hash(repo.key), self.config.extra_labels),
            launch_id=request.launch_id, image=self._image(repo), token=token, port=self.config.server_port,
            base_url=self.config.base_url_template.format(name=name), origins=origins, datasets=self.config.dataset_volumes,
            resources=self.config.resources, node_selector=self.config.node_selector, run_as_user=self.config.run_as_user,
            image_pull_policy=self.config.image_pull_policy,
        )

    async def _wait_ready(self, name: str) -> AsyncIterator[LaunchEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.start_timeout
        last_phase = None
        while True:
            pod = await self._kube.read_pod(name)
            if pod["phase"] != last_phase:
                last_phase = pod["phase"]
                yield LaunchEvent(phase="launching", message=f"Pod {name} is {last_phase}\n")
            if pod["phase"] in ("Failed", "Succeeded"):
                raise KubeError(f"pod {name} ended ({pod['phase']}) before it was ready", status_code=503)
            if pod["waiting_reason"] in _STUCK_REASONS:
                raise KubeError(f"pod {name} cannot start: {pod['waiting_reason']}", status_code=503)
            if pod["phase"] == "Running" and pod["ready"]:
                return
            if loop.time() + self.config.poll_interval > deadline:
                raise asyncio.TimeoutError
            await asyncio.sleep(self.config.poll_interval)

    async def _delete(self, name: str) -> bool:
        """Delete pod and service; True when either existed."""
        try:
            found = await asyncio.gather(self._kube.delete_pod(name), self._kube.delete_service(name))
        except KubeError as exc:
            log.warning("could not delete %s: %s", name, exc)
            return False
        return any(found)

    async def stop_server(self, launch_id: str) -> bool:
        return await self._delete(object_name(launch_id))

    async def capacity(self) -> Capacity:
        try:
            pods = await self._kube.list_pods(selector(self.context.member_id))
            total = await self._total()
        except KubeError:
            return Capacity(total=0, used=0)
        used = sum(1 for p in pods if p["ready"])
        return Capacity(total=total, used=used, building=len(pods) - used)

    async def health(self) -> list[HealthCheck]:
        try:
            self._version = await self._kube.version()
            await self._kube.list_pods(selector(self.context.member_id))
        except KubeError as exc:
            return [HealthCheck(service="Kubernetes API", ok=False, detail={"error": str(exc)})]
        return [HealthCheck(service="Kubernetes API", ok=True, detail={"version": self._version, "namespace": self.config.namespace})]

    def versions(self) -> dict[str, str]:
        return {"kubernetes": self._version} if self._version else {}

    async def cull_once(self) -> list[str]:
        """Delete this member's pods older than ``max_age``; returns their names."""
        if self.config.max_age is None:
            return []
        pods = await self._kube.list_pods(selector(self.context.member_id))
        names = pods_to_cull([(p["name"], p["created"]) for p in pods], self.context.clock.now(), self.config.max_age)
        for name in names:
            await self._delete(name)
        return names

    async def _cull_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.cull_interval)
            try:
                await self.cull_once()
            except KubeError as exc:
                log.warning("cull pass failed: %s", exc)
