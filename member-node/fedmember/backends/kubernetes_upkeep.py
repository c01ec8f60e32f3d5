"""The ``kubernetes`` backend's life around its launches: informers, restarts, orphans, culling and routes.

* **Restarts.** Pods live outside the agent, so ``detach()`` (agent shutdown)
  leaves them running, and ``adopt()`` (agent start) takes over every Ready pod
  of this member found by label: it counts in capacity, is routed and culled,
  and ``stop_server`` reaches it by the launch id the broker knows. Its token is
  read back from its Secret (one LIST) so idle culling can ask the server.
* **Orphans** of a killed agent (pods that never became Ready, pods without a
  launch id or Secret, Secrets without a pod) are deleted at adoption; finished
  pods (the server shut itself down, ``activeDeadlineSeconds``) are deleted as
  soon as the informer sees them, so nothing counts against capacity forever.
* **Culling** every ``cull_interval``: pods older than ``max_age``, and servers
  whose ``/api/status`` says idle for ``idle_timeout`` (jupyter-server also shuts
  itself down; Kubernetes' ``activeDeadlineSeconds`` is the backstop).
* **Routes**: every Ready pod has its proxy route, added before ``ready`` and
  re-checked every ``route_check_interval``; a gone pod loses it at once.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import datetime
from typing import Any, Coroutine

import aiohttp

from fedproto.failures import Failure

from .base import Backend, BackendConfig, BackendContext
from .kubernetes_client import KubeAPI, KubeError
from .kubernetes_config import KubernetesConfig
from .kubernetes_informer import Informer
from .kubernetes_pods import TOKEN_KEY, PodState, object_name, pod_state, pods_to_cull, selector
from .kubernetes_routes import ProxyError, ProxyRoutes, route_path
from .secrets import SecretConfigError

log = logging.getLogger(__name__)
IDLE_CHECKS_AT_ONCE = 20


def _quota_pods(raw: dict[str, Any]) -> int | None:
    hard = (raw.get("status") or {}).get("hard") or (raw.get("spec") or {}).get("hard") or {}
    return int(str(hard["pods"])) if "pods" in hard else None


class KubernetesUpkeep(Backend):
    """State and background work shared by the launches (see the module docstring)."""

    config: KubernetesConfig

    def __init__(self, config: BackendConfig, context: BackendContext) -> None:
        super().__init__(config, context)
        c = self.config
        self.kube = KubeAPI(c.kubeconfig, c.kube_context, c.namespace, c.request_timeout)
        self.selector = selector(context.member_id)
        self.pods: Informer[PodState] = Informer(self.kube, "pods", self.selector, pod_state, on_change=self._pod_changed)
        self.quotas: Informer[int | None] = Informer(self.kube, "resourcequotas", "", _quota_pods)
        self.routes: ProxyRoutes | None = None  # made in start(), once the token file can be read
        self.proxy_error: str | None = None
        self.tokens: dict[str, str] = {}
        self._reserved: set[str] = set()  # launches that counted a slot before their pod exists
        self._version: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._http: aiohttp.ClientSession | None = None

    # -- lifetime ----------------------------------------------------------------------------
    async def start(self) -> None:
        c = self.config
        if c.proxy_api_url:
            try:
                self.routes = ProxyRoutes(c.proxy_api_url, c.proxy_token.read("proxy"), self.context.member_id, c.request_timeout)
            except SecretConfigError as exc:
                self.proxy_error = str(exc)  # launches fail 503 with this until the agent restarts with the token
                log.error("no routes to servers: %s", exc)
        self._loops = [asyncio.create_task(coro, name=f"kubernetes-{what}") for what, coro in (
            ("pods", self.pods.run()), ("quotas", self.quotas.run()), ("cull", self._every(self.config.cull_interval, self.cull_once)),
            ("routes", self._every(self.config.route_check_interval, self.check_routes)))]
        try:
            self._version = await self.kube.version()
        except KubeError as exc:
            log.warning("Kubernetes version unknown: %s", exc)

    async def adopt(self) -> list[str]:
        if not await self._synced():
            log.warning("cannot adopt servers: the pod list is not available (%s)", self.pods.error)
            return []
        try:
            secrets = (await self.kube.list("secrets", self.selector)).get("items") or []
        except KubeError as exc:
            log.warning("cannot adopt servers: %s", exc)
            return []
        for secret in secrets:
            name, data = secret["metadata"]["name"], secret.get("data") or {}
            if TOKEN_KEY in data:
                self.tokens[name] = base64.b64decode(data[TOKEN_KEY]).decode()
        adopted, orphans = [], []
        for pod in list(self.pods.items.values()):
            mine = pod.launch_id is not None and object_name(pod.launch_id) == pod.name and pod.name in self.tokens
            (adopted if mine and pod.ready and not pod.finished else orphans).append(pod)
        orphans_names = {p.name for p in orphans} | {s["metadata"]["name"] for s in secrets if s["metadata"]["name"] not in self.pods.items}
        for name in sorted(orphans_names):
            log.info("deleting %s: left by an agent that died before its server was ready", name)
            await self._delete(name)
        await self.check_routes()
        return sorted(p.launch_id for p in adopted if p.launch_id)

    async def detach(self) -> None:
        """Stop watching and culling; every server keeps running for the next agent to adopt."""
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        self._loops, self._tasks = [], set()
        if self.routes is not None:
            await self.routes.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.kube.close()

    async def stop(self) -> None:
        """Delete every pod and Secret of this member (and their routes), then detach."""
        try:
            names = {p["metadata"]["name"] for kind in ("pods", "secrets") for p in (await self.kube.list(kind, self.selector)).get("items") or []}
            for name in sorted(names):
                await self._delete(name)
        except KubeError as exc:
            log.warning("could not delete every server at shutdown: %s", exc)
        await self.detach()

    async def _synced(self) -> bool:
        try:
            await asyncio.wait_for(self.pods.synced.wait(), self.config.request_timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _total(self) -> int:
        limits = [v for v in self.quotas.items.values() if v is not None]
        return min([self.config.max_servers, *limits])

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except (KubeError, ProxyError) as exc:
                log.warning("%s failed: %s", job.__name__, exc)

    # -- deleting ----------------------------------------------------------------------------
    async def _delete(self, name: str) -> bool:
        """Delete pod, Secret and route; True when the pod or Secret existed."""
        self.tokens.pop(name, None)
        if self.routes is not None:
            try:
                await self.routes.delete(route_path(name))
            except ProxyError as exc:
                self.proxy_error = str(exc)  # the next route check removes it
        try:
            found = await asyncio.gather(self.kube.delete("pods", name, grace_period_seconds=5), self.kube.delete("secrets", name))
        except KubeError as exc:
            log.warning("could not delete %s: %s", name, exc)
            return False
        return any(found)

    def _pod_changed(self, name: str, pod: PodState | None) -> None:
        """Informer callback: reap finished pods (idle shutdown, deadline), drop routes of gone ones."""
        launching = name in self._reserved
        if pod is not None and pod.finished and not pod.deleting and not launching:
            log.info("pod %s ended (%s): deleting it", name, pod.phase)
            self._spawn(self._delete(name))
        elif pod is None and self.routes is not None and not launching:
            self.tokens.pop(name, None)
            self._spawn(self._drop_route(name))

    async def _drop_route(self, name: str) -> None:
        try:
            await self.routes.delete(route_path(name))  # type: ignore[union-attr]
        except ProxyError as exc:
            self.proxy_error = str(exc)

    # -- routes ------------------------------------------------------------------------------
    def _target(self, pod: PodState) -> str:
        return f"http://{pod.ip}:{self.config.server_port}"

    async def _route(self, pod: PodState) -> None:
        if self.routes is None:
            if self.config.proxy_api_url:
                raise KubeError(f"the server started but cannot be routed: {self.proxy_error}", status_code=Failure.UNAVAILABLE)
            return
        try:
            await self.routes.add(route_path(pod.name), self._target(pod))
            self.proxy_error = None
        except ProxyError as exc:
            self.proxy_error = str(exc)
            raise KubeError(f"the server started but cannot be routed: {exc}", status_code=Failure.UNAVAILABLE) from None

    async def check_routes(self) -> None:
        """Make the proxy route exactly this member's Ready pods."""
        if self.routes is None or not self.pods.synced.is_set():
            return
        wanted = {route_path(p.name): self._target(p) for p in self.pods.items.values() if p.ready and p.ip and not p.finished}
        try:
            added, removed = await self.routes.sync(wanted)
            self.proxy_error = None
        except ProxyError as exc:
            self.proxy_error = str(exc)
            raise
        if added or removed:
            log.info("proxy routes fixed: %d added, %d removed", len(added), len(removed))

    # -- culling -----------------------------------------------------------------------------
    async def cull_once(self) -> list[str]:
        """Delete this member's servers past ``max_age`` or idle past ``idle_timeout``; their names."""
        now, c = self.context.clock.now(), self.config
        live = [p for p in self.pods.items.values() if not p.finished and p.name not in self._reserved]
        names = pods_to_cull([(p.name, p.created) for p in live], now, c.max_age) if c.max_age else []
        if c.idle_timeout:
            asked = [p for p in live if p.name not in names and p.ready]
            gate = asyncio.Semaphore(IDLE_CHECKS_AT_ONCE)  # 1,000 servers: a pass takes seconds, not minutes

            async def last_activity(pod: PodState) -> float | None:
                async with gate:
                    return await self._last_activity(pod)

            for pod, last in zip(asked, await asyncio.gather(*(last_activity(p) for p in asked))):
                if last is not None and now - last > c.idle_timeout:
                    names.append(pod.name)
        for name in names:
            log.info("culling %s", name)
            await self._delete(name)
        return names

    async def _last_activity(self, pod: PodState) -> float | None:
        """The server's own ``last_activity`` (epoch seconds), or None when it cannot say."""
        token = self.tokens.get(pod.name)
        if token is None or not pod.ip:
            return None
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.request_timeout))
        url = f"{self._target(pod)}{self.config.base_url_template.format(name=pod.name)}api/status"
        try:
            async with self._http.get(url, headers={"Authorization": f"token {token}"}) as resp:
                if resp.status != 200:
                    return None
                stamp = (await resp.json()).get("last_activity")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None
        try:
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
