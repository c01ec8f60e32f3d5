"""A FAKE in-process Kubernetes API server (aiohttp) with only the endpoints the kubernetes backend uses.

No cluster runs in this project's tests: this stands in for one. It stores pods,
services and resource quotas of namespaces in memory, filters lists by equality
label selectors, answers Kubernetes-shaped 404/409 ``Status`` objects, and moves
each new pod from Pending to Running with a Ready condition after ``ready_delay``
seconds (or to an image pull error when ``fail_pods`` is set). ``fail_services``
makes service creation answer 500, to test clean-up half-way through a launch.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


class FakeKubernetes:
    """State and handlers of the fake API server."""

    def __init__(self, ready_delay: float = 0.2) -> None:
        self.ready_delay = ready_delay
        self.fail_pods = False
        self.fail_services = False
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"pods": {}, "services": {}, "resourcequotas": {}}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_get("/version/", self.version)  # kubernetes-asyncio asks with the slash
        for kind in ("pods", "services", "resourcequotas"):
            app.router.add_get(f"/api/v1/namespaces/{{ns}}/{kind}", self.list)
            app.router.add_post(f"/api/v1/namespaces/{{ns}}/{kind}", self.create)
            app.router.add_get(f"/api/v1/namespaces/{{ns}}/{kind}/{{name}}", self.read)
            app.router.add_delete(f"/api/v1/namespaces/{{ns}}/{kind}/{{name}}", self.delete)
        app.on_cleanup.append(self._cancel)
        return app

    async def _cancel(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add_quota(self, namespace: str, pods: int) -> None:
        quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods", "namespace": namespace},
                 "spec": {"hard": {"pods": str(pods)}}, "status": {"hard": {"pods": str(pods)}, "used": {"pods": "0"}}}
        self.objects["resourcequotas"][(namespace, "pods")] = quota

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return [o for (ns, _), o in self.objects["pods"].items() if ns == namespace]

    @staticmethod
    def _kind(request: web.Request) -> str:
        return request.path.split("/")[5]

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({
            "major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "gitCommit": "0" * 40, "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64",
        })

    async def list(self, request: web.Request) -> web.Response:
        kind, ns = self._kind(request), request.match_info["ns"]
        wanted = dict(p.split("=", 1) for p in request.query.get("labelSelector", "").split(",") if p)
        items = [o for (n, _), o in self.objects[kind].items() if n == ns and wanted.items() <= (o["metadata"].get("labels") or {}).items()]
        list_kind = {"pods": "PodList", "services": "ServiceList", "resourcequotas": "ResourceQuotaList"}[kind]
        return web.json_response({"kind": list_kind, "apiVersion": "v1", "metadata": {}, "items": items})

    async def create(self, request: web.Request) -> web.Response:
        kind, ns = self._kind(request), request.match_info["ns"]
        if kind == "services" and self.fail_services:
            return _status(500, "InternalError", "fake: service creation fails")
        body = await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.objects[kind]:
            return _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if kind == "pods":
            body["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
            task = asyncio.create_task(self._start_pod(ns, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.objects[kind][(ns, name)] = body
        self.created.append(f"{kind}/{name}")
        return web.json_response(body, status=201)

    async def _start_pod(self, ns: str, name: str) -> None:
        await asyncio.sleep(self.ready_delay)
        pod = self.objects["pods"].get((ns, name))
        if pod is None:
            return
        if self.fail_pods:
            pod["status"]["containerStatuses"] = [{"name": "notebook", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                                                   "state": {"waiting": {"reason": "ErrImagePull", "message": "fake: no such image"}}}]
            return
        pod["status"] = {"phase": "Running", "podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]}

    async def read(self, request: web.Request) -> web.Response:
        kind, key = self._kind(request), (request.match_info["ns"], request.match_info["name"])
        if key not in self.objects[kind]:
            return _status(404, "NotFound", f'{kind} "{key[1]}" not found')
        return web.json_response(self.objects[kind][key])

    async def delete(self, request: web.Request) -> web.Response:
        kind, key = self._kind(request), (request.match_info["ns"], request.match_info["name"])
        obj = self.objects[kind].pop(key, None)
        if obj is None:
            return _status(404, "NotFound", f'{kind} "{key[1]}" not found')
        self.deleted.append(f"{kind}/{key[1]}")
        return web.json_response(obj)


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
