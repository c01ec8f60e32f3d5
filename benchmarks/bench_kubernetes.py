"""Benchmark: the kubernetes backend's CPU and poll latency with 1,000 pods, against the FAKE Kubernetes API server.

Run: .venv/bin/python benchmarks/bench_kubernetes.py [--pods 1000] [--polls 200]
The fake API server (tests/member/fake_kubernetes.py) runs in its own process and holds
``--pods`` Running pods of this member (~3 KB of JSON each). In this process, the backend:

1. starts: its informer lists the pods once and opens a watch (``sync_cpu_ms``);
2. answers ``--polls`` status polls (``capacity()`` + ``health()``, what every signed status ad
   and ``/health`` asks) while the fake flips every pod's Ready condition, so 1,000 watch events
   arrive during the polls (``events_cpu_ms``: CPU of applying them; ``poll_p50/p99_ms``);
3. the baseline, measured in the same run against the same server: what the backend did before
   the informer, one LIST of the pods parsed into kubernetes-asyncio's models per poll.

Prints one machine-readable summary line. ``BUDGET`` is what the tests hold the informer to.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "member"), str(ROOT / "member-node"), str(ROOT / "specs")]

from fedmember.backends.base import BackendContext  # noqa: E402
from fedmember.backends.kubernetes import KubernetesBackend, KubernetesConfig  # noqa: E402
from fedmember.backends.kubernetes_pods import APP_LABEL, label_value  # noqa: E402

NAMESPACE = "bench"
MEMBER = "bench-member"
# What a status poll and the informer may cost with 1,000 pods (tests/member/test_backend_kubernetes_scale.py
# checks the request counts; this benchmark reports the times).
BUDGET = {"pods": 1000, "lists_at_start": 1, "requests_per_poll": 0, "poll_p99_ms": 5.0, "sync_cpu_ms": 500.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _labels() -> dict[str, str]:
    return {"app": APP_LABEL, "component": "singleuser", "federation-member": label_value(MEMBER)}


async def _control(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/_fake/{path}", json=body) as resp:
            return await resp.json()


async def _wait_up(url: str) -> None:
    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/version"):
                    return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the fake API server did not start")


def _backend(kubeconfig: Path, work: Path, pods: int) -> KubernetesBackend:
    config = KubernetesConfig(namespace=NAMESPACE, kubeconfig=kubeconfig, max_servers=pods * 2, idle_timeout=None, max_age=None)
    return KubernetesBackend(config, BackendContext(member_id=MEMBER, state_dir=work, public_url="https://nb.example.org"))


async def _poll(backend: KubernetesBackend) -> float:
    began = time.perf_counter()
    await backend.capacity()
    await backend.health()
    return (time.perf_counter() - began) * 1000


async def _informer(url: str, kubeconfig: Path, work: Path, pods: int, polls: int) -> dict[str, float]:
    backend = _backend(kubeconfig, work, pods)
    cpu0 = time.process_time()
    await backend.start()
    await backend.pods.synced.wait()
    sync_cpu = time.process_time() - cpu0
    assert len(backend.pods.items) == pods, len(backend.pods.items)
    events0, cpu1 = backend.pods.events, time.process_time()
    churn = asyncio.create_task(_control(url, "churn", {"namespace": NAMESPACE, "count": pods}))
    latencies = []
    for _ in range(polls):
        latencies.append(await _poll(backend))
        await asyncio.sleep(0.005)
    await churn
    while backend.pods.events - events0 < pods:
        await asyncio.sleep(0.01)
    events_cpu = time.process_time() - cpu1 - sum(latencies) / 1000  # the polls' own CPU is counted apart
    capacity = await backend.capacity()
    assert capacity.used + capacity.building == pods
    lists = backend.pods.lists
    await backend.detach()
    latencies.sort()
    return {"sync_cpu_ms": sync_cpu * 1000, "events_cpu_ms": events_cpu * 1000, "lists": lists,
            "poll_p50_ms": statistics.median(latencies), "poll_p99_ms": latencies[int(len(latencies) * 0.99) - 1]}


async def _baseline(kubeconfig: Path, polls: int) -> dict[str, float]:
    """The backend before the informer: LIST with kubernetes-asyncio's models on every poll."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    selector = ",".join(f"{k}={v}" for k, v in _labels().items())
    latencies, cpu0 = [], time.process_time()
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        for _ in range(polls):
            began = time.perf_counter()
            pods = await core.list_namespaced_pod(NAMESPACE, label_selector=selector)
            sum(1 for p in pods.items if p.status and p.status.phase == "Running")
            latencies.append((time.perf_counter() - began) * 1000)
    latencies.sort()
    return {"cpu_ms_per_poll": (time.process_time() - cpu0) * 1000 / polls, "poll_p50_ms": statistics.median(latencies),
            "poll_p99_ms": latencies[int(len(latencies) * 0.99) - 1]}


async def run(pods: int, polls: int, baseline_polls: int) -> str:
    from fake_kubernetes import write_kubeconfig

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'tests' / 'member')!r}); from fake_kubernetes import serve; serve({port})"
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-kubernetes-") as tmp:
            work = Path(tmp)
            await _wait_up(url)
            await _control(url, "seed", {"namespace": NAMESPACE, "count": pods, "labels": _labels()})
            kubeconfig = write_kubeconfig(work / "kubeconfig", url)
            informer = await _informer(url, kubeconfig, work, pods, polls)
            base = await _baseline(kubeconfig, baseline_polls)
    finally:
        server.terminate()
        server.wait(10)
    within = (informer["lists"] <= BUDGET["lists_at_start"] and informer["poll_p99_ms"] <= BUDGET["poll_p99_ms"]
              and informer["sync_cpu_ms"] <= BUDGET["sync_cpu_ms"])
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    return (f"bench=kubernetes pods={pods} polls={polls} lists={informer['lists']:.0f} sync_cpu_ms={informer['sync_cpu_ms']:.0f} "
            f"events={pods} events_cpu_ms={informer['events_cpu_ms']:.0f} "
            f"poll_p50_ms={informer['poll_p50_ms']:.3f} poll_p99_ms={informer['poll_p99_ms']:.3f} "
            f"baseline_cpu_ms_per_poll={base['cpu_ms_per_poll']:.0f} baseline_poll_p50_ms={base['poll_p50_ms']:.0f} "
            f"baseline_poll_p99_ms={base['poll_p99_ms']:.0f} p50_speedup={base['poll_p50_ms'] / max(informer['poll_p50_ms'], 1e-6):.0f}x "
            f"within_budget={'yes' if within else 'NO'} "
            f"nproc={os.cpu_count()} cpu=\"{model}\" load1={os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=BUDGET["pods"])
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--baseline-polls", type=int, default=10)
    args = parser.parse_args()
    print(asyncio.run(run(args.pods, args.polls, args.baseline_polls)))


if __name__ == "__main__":
    main()
