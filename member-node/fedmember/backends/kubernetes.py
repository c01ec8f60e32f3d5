"""The ``kubernetes`` backend: runs a prebuilt image as one pod per launch, routed through configurable-http-proxy.

Each launch creates, in ``namespace`` (a namespace of its own by default):

* a Secret ``fed-<hash of the launch id>`` holding the server's random token;
* a Pod of the same name labelled ``app=binder-federation``, ``component=singleuser``,
  ``federation-member``, ``launch-id``, ``repo-hash`` (plus ``extra_labels``),
  running ``jupyter server`` with ``base_url=/<name>/``, the token from the
  Secret, the datasets it asked for mounted read-only, and a spec that passes
  Pod Security "restricted" (see ``kubernetes_pods``).

Once the pod is Ready the agent adds the route ``/<name>`` -> ``http://<pod IP>:<port>``
to the proxy (``proxy_api_url``) and answers ``ready`` with ``url_template``
(``{public_url}/{name}/``). On any failure, and when the consumer goes away,
the pod, Secret and route are deleted; deletes treat 404 as done.

One informer (``kubernetes_informer``) watches this member's pods; capacity,
health and launch progress read it, and the capacity check reserves a slot in
the same step (nothing awaits between counting and reserving). A pod the
scheduler cannot place fails the launch after ``unschedulable_grace`` with the
scheduler's message. Culling, restarts and orphans are in ``kubernetes_upkeep``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import aclosing
from typing import Any, AsyncIterator, ClassVar

from fedproto.failures import Failure
from fedproto.launch import LaunchEvent, LaunchRequest
from fedproto.repospec import PROVIDERS, RepoSpec
from fedproto.status import Capacity, HealthCheck, image_hash

from .base import BackendConfig, failed, first_match
from .kubernetes_client import KubeError
from .kubernetes_config import ImageRule, KubernetesConfig
from .kubernetes_pods import PodSpec, PodState, labels, object_name, pod_manifest, secret_manifest
from .kubernetes_upkeep import KubernetesUpkeep

__all__ = ["ImageRule", "KubernetesBackend", "KubernetesConfig"]

log = logging.getLogger(__name__)


class KubernetesBackend(KubernetesUpkeep):
    """A pod + Secret per launch in one namespace. See the module docstring."""

    kind: ClassVar[str] = "kubernetes"
    providers: ClassVar[tuple[str, ...]] = PROVIDERS
    Config: ClassVar[type[BackendConfig]] = KubernetesConfig

    def _image(self, repo: RepoSpec) -> str:
        rule = first_match(self.config.image_rules, repo)
        return rule.image if rule is not None else self.config.default_image

    def _in_use(self) -> set[str]:
        """Names of pods that hold a slot: live pods and launches that reserved one."""
        return {p.name for p in self.pods.items.values() if not p.finished} | self._reserved

    async def launch(self, request: LaunchRequest, repo: RepoSpec) -> AsyncIterator[LaunchEvent]:
        if not await self._synced():
            yield failed(f"the Kubernetes API cannot be read: {self.pods.error or 'no pod list yet'}", Failure.UNAVAILABLE)
            return
        name, total = object_name(request.launch_id), self._total()
        # Counting and reserving with no await between them: concurrent launches cannot both take the last slot.
        in_use = self._in_use()
        if name in in_use:
            yield failed(f"launch {request.launch_id} already has a server here", Failure.CONFLICT)
            return
        if len(in_use) >= total:
            yield failed(f"all {total} servers of this member are in use", Failure.CAPACITY)
            return
        self._reserved.add(name)
        try:
            # aclosing: a consumer that goes away mid-launch gets the pod deleted now, not at GC.
            async with aclosing(self._run(request, repo, name)) as events:
                async for event in events:
                    yield event
        finally:
            self._reserved.discard(name)

    async def _run(self, request: LaunchRequest, repo: RepoSpec, name: str) -> AsyncIterator[LaunchEvent]:
        token, ready = secrets.token_urlsafe(24), False
        tags = labels(self.context.member_id, request.launch_id, image_hash(repo.key), self.config.extra_labels)
        try:
            yield LaunchEvent(phase="launching", message=f"Creating pod {name}...\n")
            await self.kube.create("secrets", secret_manifest(name=name, labels=tags, launch_id=request.launch_id, token=token))
            await self.kube.create("pods", self._pod(request, repo, name, tags))
            self.tokens[name] = token
            pod = None
            async with aclosing(self._wait_ready(name)) as progress:
                async for event in progress:
                    if isinstance(event, PodState):
                        pod = event
                    else:
                        yield event
            assert pod is not None
            await self._route(pod)
            url = self.config.url_template.format(public_url=self.context.public_url.rstrip("/"), name=name, namespace=self.config.namespace)
            if not url.startswith(("https://", "http://")):
                raise KubeError(f"member misconfigured: url_template gives {url!r}, not an absolute URL (is public_url set?)")
            ready = True
            yield LaunchEvent(phase="ready", message=f"server running at {url}\n", url=url, token=token, image=self._image(repo),
                              repo_url=repo.repo_url, binder_request=repo.binder_request)
        except KubeError as exc:
            yield failed(str(exc), exc.status_code)
        except asyncio.TimeoutError:
            yield failed(f"the pod was not ready within {self.config.start_timeout:.0f} s", Failure.TIMEOUT)
        finally:
            if not ready:
                await self._delete(name)

    def _pod(self, request: LaunchRequest, repo: RepoSpec, name: str, tags: dict[str, str]) -> dict[str, Any]:
        c = self.config
        needed = request.needed_datasets()
        spec = PodSpec(
            image_pull_policy=c.image_pull_policy, port=c.server_port, run_as_user=c.run_as_user, resources=c.resources,
            node_selector=c.node_selector, tolerations=c.tolerations, priority_class_name=c.priority_class_name,
            image_pull_secrets=c.image_pull_secrets, idle_timeout=c.idle_timeout,
            active_deadline=int(c.max_age + c.cull_interval) if c.max_age else None,
        )
        return pod_manifest(
            name=name, labels=tags, launch_id=request.launch_id, image=self._image(repo), base_url=c.base_url_template.format(name=name),
            origins=[o for o in self.context.cors_allow_origins if o], spec=spec,
            volumes={key: v for key, v in c.dataset_volumes.items() if v.used_by(needed)},
        )

    async def _wait_ready(self, name: str) -> AsyncIterator[LaunchEvent | PodState]:
        """Progress events from the informer, ending with the Ready pod's state; raises on a pod that cannot start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.start_timeout
        last_phase, stuck_since = None, None
        while True:
            pod = self.pods.get(name)
            wait = deadline - loop.time()
            if pod is None and last_phase is not None:
                raise KubeError(f"pod {name} was deleted before it was ready", status_code=Failure.UNAVAILABLE)
            if pod is not None:
                if pod.phase != last_phase:
                    last_phase = pod.phase
                    yield LaunchEvent(phase="launching", message=f"Pod {name} is {last_phase}\n")
                if pod.finished:
                    raise KubeError(f"pod {name} ended ({pod.phase}) before it was ready", status_code=Failure.UNAVAILABLE)
                if pod.ready and pod.ip:
                    yield pod
                    return
                if pod.problem and pod.problem.startswith("no node"):
                    stuck_since = loop.time() if stuck_since is None else stuck_since
                    if loop.time() - stuck_since >= self.config.unschedulable_grace:
                        raise KubeError(f"pod {name} cannot start: {pod.problem}", status_code=Failure.CAPACITY)
                    wait = min(wait, stuck_since + self.config.unschedulable_grace - loop.time())
                elif pod.problem:
                    raise KubeError(f"pod {name} cannot start: {pod.problem}", status_code=Failure.UNAVAILABLE)
                else:
                    stuck_since = None
            if deadline - loop.time() <= 0:
                raise asyncio.TimeoutError
            await self.pods.changed(name, max(wait, 0.0))

    async def stop_server(self, launch_id: str) -> bool:
        return await self._delete(object_name(launch_id))

    async def capacity(self) -> Capacity:
        if not self.pods.synced.is_set():
            return Capacity(total=0, used=0)
        in_use = self._in_use()
        used = sum(1 for p in self.pods.items.values() if p.ready and not p.finished)
        return Capacity(total=self._total(), used=used, building=len(in_use) - used)

    async def health(self) -> list[HealthCheck]:
        detail: dict[str, Any] = {"namespace": self.config.namespace, "pods": len(self.pods.items)}
        if self._version:
            detail["version"] = self._version
        checks = [HealthCheck(service="Kubernetes API", ok=self.pods.healthy, detail={**detail, **({"error": self.pods.error} if self.pods.error else {})})]
        if self.config.proxy_api_url:
            checks.append(HealthCheck(service="Proxy", ok=self.proxy_error is None, detail={"error": self.proxy_error} if self.proxy_error else {}))
        return checks

    def versions(self) -> dict[str, str]:
        return {"kubernetes": self._version} if self._version else {}
