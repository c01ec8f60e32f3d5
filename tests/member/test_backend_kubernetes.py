"""The kubernetes backend against a FAKE in-process Kubernetes API server (tests/member/fake_kubernetes.py), not a cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from fedproto.clock import FakeClock
from fedproto.launch import LaunchRequest
from fedmember.backends import backend_class
from fedmember.backends.kubernetes import KubernetesBackend, KubernetesConfig
from fedmember.backends.kubernetes_pods import object_name

from backend_fixtures import collect, free_port, launch_on, make_context
from fake_kubernetes import FakeKubernetes, write_kubeconfig

NS = "fed-test"


@pytest.fixture
async def fake_kube(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[tuple[FakeKubernetes, Path]]:
    fake = FakeKubernetes(ready_delay=0.2)
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    yield fake, write_kubeconfig(tmp_path / "kubeconfig", str(server.make_url("")).rstrip("/"))


def backend(tmp_path: Path, kubeconfig: Path, **config: Any) -> KubernetesBackend:
    values: dict[str, Any] = {"namespace": NS, "kubeconfig": kubeconfig, "poll_interval": 0.05, "start_timeout": 5, "request_timeout": 3,
                              "default_image": "quay.io/jupyter/base-notebook:2026", "dataset_volumes": {
                                  "climate": {"mount_path": "/data/climate", "claim_name": "climate-pvc"},
                                  "genomes": {"mount_path": "/data/genomes", "host_path": "/srv/genomes"}}}
    values.update(config)
    return KubernetesBackend(KubernetesConfig(**values), make_context(tmp_path, public_url="https://nb.example.org/"))


def request(launch_id: str) -> LaunchRequest:
    return LaunchRequest(provider="gh", spec="org/repo/HEAD", launch_id=launch_id)


def test_kubernetes_backend_is_registered_by_kind() -> None:
    assert backend_class("kubernetes") is KubernetesBackend


async def test_kubernetes_fake_api_launch_to_ready(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: pod + service created, pod spec carries token, labels, read-only datasets, non-root."""
    fake, kubeconfig = fake_kube
    kube = backend(tmp_path, kubeconfig)
    events = await collect(launch_on(kube, request("launch_K8S-0001")))
    ready = events[-1]
    name = object_name("launch_K8S-0001")
    assert ready.phase == "ready" and ready.url == f"https://nb.example.org/{name}/" and ready.token
    pod = fake.objects["pods"][(NS, name)]
    assert (NS, name) in fake.objects["services"]
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "binder-federation" and labels["component"] == "singleuser" and labels["launch-id"] == name[4:]
    assert len(labels["repo-hash"]) == 16 and pod["metadata"]["annotations"]["binder-federation/launch-id"] == "launch_K8S-0001"
    container = pod["spec"]["containers"][0]
    assert {"name": "JUPYTER_TOKEN", "value": ready.token} in container["env"]
    assert ready.token not in " ".join(container["args"])  # not on the command line
    assert f"--ServerApp.base_url=/{name}/" in container["args"]
    assert all(m["readOnly"] for m in container["volumeMounts"]) and len(container["volumeMounts"]) == 2
    assert {"persistentVolumeClaim": {"claimName": "climate-pvc", "readOnly": True}}.items() <= pod["spec"]["volumes"][0].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] and pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"] == "quay.io/jupyter/base-notebook:2026"
    assert (await kube.health())[0].ok and kube.versions() == {"kubernetes": "v1.30.0-fake"}
    await kube.stop()


async def test_kubernetes_fake_api_capacity_from_quota(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: a ResourceQuota's pods limit lowers max_servers, and a full quota fails 429."""
    fake, kubeconfig = fake_kube
    fake.add_quota(NS, pods=1)
    kube = backend(tmp_path, kubeconfig, max_servers=5)
    assert (await kube.capacity()).total == 1
    assert (await collect(launch_on(kube, request("launch-k8s-0002"))))[-1].phase == "ready"
    capacity = await kube.capacity()
    assert (capacity.total, capacity.used, capacity.building) == (1, 1, 0)
    refused = await collect(launch_on(kube, request("launch-k8s-0003")))
    assert [(e.phase, e.status_code) for e in refused] == [("failed", 429)]
    assert len(fake.pods(NS)) == 1
    await kube.stop()


@pytest.mark.parametrize("failure", ["service-create-500", "image-pull-error", "start-timeout"])
async def test_kubernetes_fake_api_failure_midway_cleans_up(fake_kube: Any, tmp_path: Path, failure: str) -> None:
    """Against the fake API server: a launch failing after the pod exists deletes the pod and the service."""
    fake, kubeconfig = fake_kube
    fake.fail_services = failure == "service-create-500"
    fake.fail_pods = failure == "image-pull-error"
    fake.ready_delay = 10 if failure == "start-timeout" else 0.1
    kube = backend(tmp_path, kubeconfig, start_timeout=0.5)
    events = await collect(launch_on(kube, request("launch-k8s-0004")))
    assert events[-1].phase == "failed"
    assert events[-1].status_code == {"service-create-500": 503, "image-pull-error": 503, "start-timeout": 504}[failure]
    assert fake.objects["pods"] == {} and fake.objects["services"] == {}
    assert f"pods/{object_name('launch-k8s-0004')}" in fake.deleted
    await kube.stop()


async def test_kubernetes_fake_api_stop_server_deletes(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: stop_server deletes pod and service; a second stop finds nothing."""
    fake, kubeconfig = fake_kube
    kube = backend(tmp_path, kubeconfig)
    await collect(launch_on(kube, request("launch-k8s-0005")))
    assert await kube.stop_server("launch-k8s-0005") is True
    assert fake.objects["pods"] == {} and fake.objects["services"] == {}
    assert await kube.stop_server("launch-k8s-0005") is False
    await kube.stop()


async def test_kubernetes_fake_api_stop_deletes_all_and_leaves_others(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: stop() deletes every pod/service of this member, and nothing else."""
    fake, kubeconfig = fake_kube
    kube = backend(tmp_path, kubeconfig)
    for n in range(3):
        assert (await collect(launch_on(kube, request(f"launch-k8s-01{n}0"))))[-1].phase == "ready"
    fake.objects["pods"][(NS, "someone-else")] = {"metadata": {"name": "someone-else", "labels": {"app": "other"}}, "status": {"phase": "Running"}}
    await kube.stop()
    assert list(fake.objects["pods"]) == [(NS, "someone-else")] and fake.objects["services"] == {}


async def test_kubernetes_fake_api_culls_pods_older_than_max_age(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: cull_once deletes pods past max_age, by the injected clock."""
    fake, kubeconfig = fake_kube
    kube = backend(tmp_path, kubeconfig, max_age=600)
    await collect(launch_on(kube, request("launch-k8s-0006")))
    clock = FakeClock(start=time.time())  # the fake server stamps pods with the real time
    kube.context.clock = clock
    assert await kube.cull_once() == []
    clock.advance(601)
    assert await kube.cull_once() == [object_name("launch-k8s-0006")]
    assert fake.objects["pods"] == {}
    await kube.stop()


async def test_kubernetes_fake_api_unreachable_is_unhealthy_and_fails_503(tmp_path: Path) -> None:
    """Against no API server at all: health not ok, launch failed 503."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    kube = backend(tmp_path, kubeconfig)
    assert not (await kube.health())[0].ok
    events = await collect(launch_on(kube, request("launch-k8s-0007")))
    assert [(e.phase, e.status_code) for e in events] == [("failed", 503)]
    await kube.stop()


async def test_kubernetes_fake_api_consumer_leaving_mid_launch_deletes_the_pod(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: closing the launch stream before ready (the broker hung up) deletes what was created."""
    fake, kubeconfig = fake_kube
    fake.ready_delay = 10
    kube = backend(tmp_path, kubeconfig)
    events = launch_on(kube, request("launch-k8s-0008"))
    async for event in events:
        if event.message.startswith("Pod ") and "Pending" in event.message:
            break
    await events.aclose()
    assert fake.objects["pods"] == {} and fake.objects["services"] == {}
    await kube.stop()


async def test_kubernetes_fake_api_without_public_url_fails_503_and_cleans_up(fake_kube: Any, tmp_path: Path) -> None:
    """Against the fake API server: a ready URL that would not be absolute is a site misconfiguration, not a launch."""
    fake, kubeconfig = fake_kube
    kube = backend(tmp_path, kubeconfig)
    kube.context.public_url = ""
    events = await collect(launch_on(kube, request("launch-k8s-0009")))
    assert events[-1].status_code == 503 and "url_template" in events[-1].message
    assert fake.objects["pods"] == {}
    await kube.stop()
