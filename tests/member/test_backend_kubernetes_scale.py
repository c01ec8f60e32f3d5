"""The kubernetes backend's informer with 1,000 pods, against the FAKE Kubernetes API server: one LIST, then
watch events; polls (capacity, health) and launch progress never ask the API. Counts, not times: the times
are benchmarks/bench_kubernetes.py's (BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_kubernetes import BUDGET
from fedmember.backends.kubernetes_pods import APP_LABEL, label_value

from backend_fixtures import collect, launch_on
from fake_kubernetes import bench_pod, running
from kubekit import MEMBER, NS, Kube, kube, make_backend, request, start_fake, until  # noqa: F401



def _seed(kube: Kube, count: int) -> None:
    member_labels = {"app": APP_LABEL, "component": "singleuser", "federation-member": label_value(MEMBER)}
    for n in range(count):
        kube.fake.put("pods", NS, bench_pod(f"fed-bench-{n:05d}", member_labels, n))


async def test_kubernetes_fake_api_1000_pods_from_the_informer(kube: Kube, tmp_path: Path) -> None:
    """1,000 pods: listed once; 200 polls ask nothing; 1,000 watch events all land; a launch still fits, and is refused when full."""
    pods = BUDGET["pods"]
    _seed(kube, pods)
    backend = make_backend(tmp_path, kube, max_servers=pods + 1)
    await backend.start()
    await backend.pods.synced.wait()
    assert backend.pods.lists == BUDGET["lists_at_start"] and len(backend.pods.items) == pods
    asked = sum(kube.fake.requests.values())
    for _ in range(200):
        capacity = await backend.capacity()
        checks = await backend.health()
    assert sum(kube.fake.requests.values()) - asked == 200 * BUDGET["requests_per_poll"]
    assert (capacity.total, capacity.used, capacity.building) == (pods + 1, pods, 0) and checks[0].ok
    events = backend.pods.events
    for pod in kube.fake.pods(NS):
        kube.fake.update_pod(NS, pod["metadata"]["name"], running(pod["status"]["podIP"], ready=False))
    await until(lambda: backend.pods.events - events == pods, timeout=30)
    capacity = await backend.capacity()
    assert (capacity.used, capacity.building) == (0, pods)
    assert (await collect(launch_on(backend, request("launch-1001"))))[-1].phase == "ready"
    assert [(e.phase, e.status_code) for e in await collect(launch_on(backend, request("launch-1002")))] == [("failed", 429)]
    assert kube.fake.requests["list", "pods"] == 1 and kube.fake.requests["get", "pods"] == 0
    await backend.detach()


async def test_kubernetes_fake_api_watch_resumes_and_relists_when_expired(aiohttp_server: Any, tmp_path: Path) -> None:
    """A dropped watch resumes from its last version (no LIST); one whose version expired (410) lists again."""
    kube = await start_fake(aiohttp_server, tmp_path, ready_delay=0.05)
    kube.fake._history = type(kube.fake._history)(maxlen=5)
    backend = make_backend(tmp_path, kube)
    await backend.start()
    await collect(launch_on(backend, request("launch-w1")))
    kube.fake.close_watches()
    await collect(launch_on(backend, request("launch-w2")))  # progress arrives on the resumed watch
    assert backend.pods.lists == 1 and len(backend.pods.items) == 2
    kube.fake.close_watches()
    _seed(kube, 8)  # more changes than the server's history keeps, before the informer is back
    await until(lambda: backend.pods.lists == 2 and len(backend.pods.items) == 10)
    await asyncio.sleep(0)
    assert (await backend.health())[0].ok
    await backend.stop()
