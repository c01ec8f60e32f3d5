"""A FAKE in-process Kubernetes API server (aiohttp): only the endpoints the kubernetes backend uses.

No cluster runs in this project's tests: this stands in for one. It keeps pods,
secrets and resource quotas per namespace in memory and has the semantics the
backend relies on:

* a cluster-wide ``resourceVersion`` bumped by every change, on every object
  and list;
* ``?watch=1`` on a list streams ``ADDED``/``MODIFIED``/``DELETED`` events as
  JSON lines from a ``resourceVersion`` (410 ``Expired`` when that version is
  older than the event history kept), with ``BOOKMARK`` events when asked and an
  end after ``timeoutSeconds``; ``close_watches()`` drops every open watch, as an
  API server restart would;
* equality label selectors, Kubernetes-shaped ``Status`` errors (404/409/410);
* a kubelet: each new pod goes Pending, then (after ``ready_delay``) Running
  and Ready. ``kubelet="process"`` runs the container's command for real (the
  image is ignored: ``jupyter`` is this venv's), with its ``secretKeyRef``
  environment resolved from the stored Secrets, listening on its own pod IP
  (127.0.0.x) so routes to pod IPs work; Ready follows the readiness probe.
  A process that exits marks the pod Succeeded/Failed, as a container would.
* ``hold`` (names kept Pending), ``fail_pods`` (image pull error),
  ``unschedulable`` (PodScheduled=False with a scheduler message).

``requests`` counts calls by (verb, kind) so tests can assert how often the
agent asks.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import signal
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

KINDS = {"pods": "Pod", "secrets": "Secret", "resourcequotas": "ResourceQuota"}
HISTORY = 10_000  # watch events kept; older resourceVersions answer 410 Gone


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status_body(code, reason, message), status=code)


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubernetes:
    """State and handlers of the fake API server."""

    def __init__(self, ready_delay: float = 0.2, kubelet: str = "instant", workdir: Path | None = None) -> None:
        self.ready_delay = ready_delay
        self.kubelet = kubelet
        self.workdir = workdir
        self.fail_pods = False
        self.unschedulable: str | None = None
        self.hold: set[str] = set()
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.resource_version = 1
        self._history: collections.deque[tuple[int, str, str, str, dict[str, Any]]] = collections.deque(maxlen=HISTORY)
        self._changed = asyncio.Condition()
        self._watches: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._killers: set[asyncio.Task[None]] = set()
        self._procs: dict[tuple[str, str], asyncio.subprocess.Process] = {}
        self._next_ip = 2

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_get("/version/", self.version)  # kubernetes-asyncio asks with the slash
        for kind in KINDS:
            app.router.add_get(f"/api/v1/namespaces/{{ns}}/{kind}", self.list)
            app.router.add_post(f"/api/v1/namespaces/{{ns}}/{kind}", self.create)
            app.router.add_get(f"/api/v1/namespaces/{{ns}}/{kind}/{{name}}", self.read)
            app.router.add_delete(f"/api/v1/namespaces/{{ns}}/{kind}/{{name}}", self.delete)
        app.router.add_post("/_fake/seed", self._seed)
        app.router.add_post("/_fake/churn", self._churn)
        app.on_shutdown.append(self._close_watches)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _close_watches(self, app: web.Application) -> None:
        self.close_watches()

    async def _cleanup(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for key in list(self._procs):
            await self._kill(key)
        await asyncio.gather(*self._killers)  # never cancelled: a container must not outlive the test

    def close_watches(self) -> None:
        """End every open watch stream (an API server restart or a load balancer timeout)."""
        for task in list(self._watches):
            task.cancel()

    # -- state ---------------------------------------------------------------------------
    def _record(self, event: str, kind: str, ns: str, obj: dict[str, Any]) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self._history.append((self.resource_version, event, kind, ns, json.loads(json.dumps(obj))))
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()
        self._spawn(wake())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def put(self, kind: str, ns: str, obj: dict[str, Any], event: str = "ADDED") -> dict[str, Any]:
        """Store ``obj`` as the API server would (a test can seed what a killed agent left)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["namespace"] = ns
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", KINDS[kind])
        self.objects[kind][(ns, meta["name"])] = obj
        self._record(event, kind, ns, obj)
        return obj

    def update_pod(self, ns: str, name: str, status: dict[str, Any]) -> None:
        pod = self.objects["pods"].get((ns, name))
        if pod is not None:
            pod["status"] = status
            self._record("MODIFIED", "pods", ns, pod)

    def remove(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        obj = self.objects[kind].pop((ns, name), None)
        if obj is not None:
            self.deleted.append(f"{kind}/{name}")
            self._record("DELETED", kind, ns, obj)
        return obj

    def add_quota(self, namespace: str, pods: int) -> None:
        self.put("resourcequotas", namespace, {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": str(pods)}},
                                               "status": {"hard": {"pods": str(pods)}, "used": {"pods": "0"}}})

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return [o for (ns, _), o in self.objects["pods"].items() if ns == namespace]

    # -- handlers ------------------------------------------------------------------------
    @staticmethod
    def _kind(request: web.Request) -> str:
        return request.path.split("/")[5]

    async def version(self, request: web.Request) -> web.Response:
        self.requests["get", "version"] += 1
        return web.json_response({
            "major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "gitCommit": "0" * 40, "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64",
        })

    @staticmethod
    def _selected(obj: dict[str, Any], wanted: dict[str, str]) -> bool:
        return wanted.items() <= (obj["metadata"].get("labels") or {}).items()

    async def list(self, request: web.Request) -> web.StreamResponse:
        kind, ns = self._kind(request), request.match_info["ns"]
        wanted = dict(p.split("=", 1) for p in request.query.get("labelSelector", "").split(",") if p)
        if request.query.get("watch", "").lower() in ("1", "true"):
            self.requests["watch", kind] += 1
            return await self._watch(request, kind, ns, wanted)
        self.requests["list", kind] += 1
        items = [o for (n, _), o in self.objects[kind].items() if n == ns and self._selected(o, wanted)]
        return web.json_response({"kind": KINDS[kind] + "List", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.resource_version)}, "items": items})

    async def _watch(self, request: web.Request, kind: str, ns: str, wanted: dict[str, str]) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or self.resource_version)
        bookmarks = request.query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        if self._history and since < self._history[0][0] - 1:
            return _status(410, "Expired", f"too old resource version: {since} ({self._history[0][0]})")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._watches.add(task)
        try:
            await asyncio.wait_for(self._stream(response, kind, ns, wanted, since, bookmarks), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError, ConnectionResetError):
            pass
        finally:
            self._watches.discard(task)
        return response

    async def _stream(self, response: web.StreamResponse, kind: str, ns: str, wanted: dict[str, str], since: int, bookmarks: bool) -> None:
        sent = since
        while True:
            lines = []
            for rv, event, k, n, obj in reversed(self._history):
                if rv <= sent:
                    break
                if k == kind and n == ns and self._selected(obj, wanted):
                    lines.append(json.dumps({"type": event, "object": obj}))
            lines.reverse()
            sent = self.resource_version
            if not lines and bookmarks:
                lines.append(json.dumps({"type": "BOOKMARK", "object": {"kind": KINDS[kind], "apiVersion": "v1",
                                                                          "metadata": {"resourceVersion": str(sent)}}}))
            if lines:
                await response.write(("\n".join(lines) + "\n").encode())
            async with self._changed:
                if self.resource_version == sent:  # else a change came while writing: send it now
                    await self._changed.wait()

    async def create(self, request: web.Request) -> web.Response:
        kind, ns = self._kind(request), request.match_info["ns"]
        self.requests["create", kind] += 1
        body = await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.objects[kind]:
            return _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
        body.pop("status", None)
        if kind == "secrets" and "stringData" in body:  # as the API server does: stored base64-encoded
            body["data"] = {**body.get("data", {}), **{k: base64.b64encode(v.encode()).decode() for k, v in body.pop("stringData").items()}}
        if kind == "pods":
            body["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
        self.put(kind, ns, body)
        self.created.append(f"{kind}/{name}")
        if kind == "pods":
            self._spawn(self._kubelet(ns, name))
        return web.json_response(body, status=201)

    async def read(self, request: web.Request) -> web.Response:
        kind, key = self._kind(request), (request.match_info["ns"], request.match_info["name"])
        self.requests["get", kind] += 1
        if key not in self.objects[kind]:
            return _status(404, "NotFound", f'{kind} "{key[1]}" not found')
        return web.json_response(self.objects[kind][key])

    async def delete(self, request: web.Request) -> web.Response:
        kind, (ns, name) = self._kind(request), (request.match_info["ns"], request.match_info["name"])
        self.requests["delete", kind] += 1
        obj = self.remove(kind, ns, name)
        if obj is None:
            return _status(404, "NotFound", f'{kind} "{name}" not found')
        if kind == "pods":  # the container stops in the background, as after a real delete's answer
            killer = asyncio.get_running_loop().create_task(self._kill((ns, name)))
            self._killers.add(killer)
            killer.add_done_callback(self._killers.discard)
        return web.json_response(obj)

    # -- control (for a benchmark in another process) ---------------------------------------
    async def _seed(self, request: web.Request) -> web.Response:
        """``{"namespace", "count", "labels"}``: that many Running, Ready pods."""
        body = await request.json()
        for n in range(body["count"]):
            self.put("pods", body["namespace"], bench_pod(f"fed-bench-{n:05d}", body["labels"], n))
        return web.json_response({"resourceVersion": self.resource_version})

    async def _churn(self, request: web.Request) -> web.Response:
        """``{"namespace", "count"}``: flip the Ready condition of that many pods (one MODIFIED event each)."""
        body = await request.json()
        pods = sorted(self.pods(body["namespace"]), key=lambda p: p["metadata"]["name"])[: body["count"]]
        for pod in pods:
            ready = pod["status"]["conditions"][-1]["status"] == "True"
            self.update_pod(body["namespace"], pod["metadata"]["name"], running(pod["status"]["podIP"], ready=not ready))
        return web.json_response({"modified": len(pods), "resourceVersion": self.resource_version})

    # -- the kubelet ---------------------------------------------------------------------
    async def _kubelet(self, ns: str, name: str) -> None:
        await asyncio.sleep(self.ready_delay)
        pod = self.objects["pods"].get((ns, name))
        if pod is None or name in self.hold:
            return
        if self.unschedulable:
            self.update_pod(ns, name, {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": self.unschedulable}]})
            return
        if self.fail_pods:
            self.update_pod(ns, name, {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
                {"name": "notebook", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                 "state": {"waiting": {"reason": "ErrImagePull", "message": "fake: no such image"}}}]})
            return
        ip = f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        if self.kubelet == "process":
            await self._run_container(ns, name, pod, ip)
        else:
            self.update_pod(ns, name, running(ip, ready=True))

    async def _run_container(self, ns: str, name: str, pod: dict[str, Any], ip: str) -> None:
        container = pod["spec"]["containers"][0]
        env = dict(os.environ)
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                secret = self.objects["secrets"].get((ns, ref["name"]))
                if secret is None:
                    self.update_pod(ns, name, {"phase": "Pending", "containerStatuses": [{"name": "notebook", "ready": False, "state": {
                        "waiting": {"reason": "CreateContainerConfigError", "message": f'secret "{ref["name"]}" not found'}}}]})
                    return
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        args = [a.replace("--ip=0.0.0.0", f"--ip={ip}") for a in container["args"]]
        command = [str(Path(sys.executable).with_name(args[0])), *args[1:]]
        if os.geteuid() == 0:  # the real pod runs as its runAsUser; this test process may be root
            command.append("--allow-root")
        home = (self.workdir or Path("/tmp")) / name
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"))
        proc = await asyncio.create_subprocess_exec(*command, cwd=home, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        self._procs[(ns, name)] = proc
        self.update_pod(ns, name, running(ip, ready=False))
        self._spawn(self._probe(ns, name, ip, container))
        code = await proc.wait()
        if self._procs.pop((ns, name), None) is not None:
            self.update_pod(ns, name, {"phase": "Succeeded" if code == 0 else "Failed", "podIP": ip,
                                       "conditions": [{"type": "Ready", "status": "False"}]})

    async def _probe(self, ns: str, name: str, ip: str, container: dict[str, Any]) -> None:
        import aiohttp

        probe = container["readinessProbe"]["httpGet"]
        url = f"http://{ip}:{probe['port']}{probe['path']}"
        async with aiohttp.ClientSession() as session:
            while (ns, name) in self._procs:
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            self.update_pod(ns, name, running(ip, ready=True))
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)

    async def _kill(self, key: tuple[str, str]) -> None:
        proc = self._procs.pop(key, None)
        if proc is not None and proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()

    async def exit_container(self, ns: str, name: str) -> None:
        """The server in pod ``name`` exits by itself (jupyter-server's idle shutdown), as its container would."""
        proc = self._procs.get((ns, name))
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            await proc.wait()
        else:
            pod = self.objects["pods"][(ns, name)]
            self.update_pod(ns, name, {**pod["status"], "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}]})


def running(ip: str, *, ready: bool) -> dict[str, Any]:
    return {"phase": "Running", "podIP": ip, "conditions": [{"type": "PodScheduled", "status": "True"},
                                                             {"type": "Ready", "status": "True" if ready else "False"}]}


def bench_pod(name: str, labels: dict[str, str], n: int) -> dict[str, Any]:
    """A pod the size of a launched one (~3 KB of JSON), Running and Ready."""
    container = {"name": "notebook", "image": "quay.io/jupyter/base-notebook:2026", "args": ["jupyter", "server", f"--ServerApp.base_url=/{name}/"] * 3,
                 "env": [{"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}}],
                 "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    return {"metadata": {"name": name, "labels": labels, "annotations": {"binder-federation/launch-id": f"launch-bench-{n}"}},
            "spec": {"containers": [container], "restartPolicy": "Never", "enableServiceLinks": False},
            "status": running(f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}", ready=True)}


def serve(port: int) -> None:
    """Run the fake API server on 127.0.0.1:``port`` until killed (for benchmarks in another process)."""
    web.run_app(FakeKubernetes().app(), host="127.0.0.1", port=port, print=None)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing kubernetes-asyncio at the fake API server over plain http."""
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path
