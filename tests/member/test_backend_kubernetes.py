"""The kubernetes backend's launches against a FAKE Kubernetes API server (tests/member/fake_kubernetes.py), not a cluster."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from fedmember.backends import backend_class
from fedmember.backends.kubernetes import KubernetesBackend, KubernetesConfig
from fedmember.backends.kubernetes_pods import object_name

from backend_fixtures import collect, free_port, launch_on
from fake_kubernetes import write_kubeconfig
from kubekit import NS, Kube, kube, make_backend, request, until  # noqa: F401 - kube is a fixture



def test_kubernetes_backend_is_registered_by_kind() -> None:
    assert backend_class("kubernetes") is KubernetesBackend


def test_host_path_datasets_need_the_explicit_flag() -> None:
    volume = {"bulk": {"mount_path": "/data/bulk", "host_path": "/srv/bulk"}}
    with pytest.raises(ValueError, match="allow_host_path"):
        KubernetesConfig(dataset_volumes=volume)
    assert KubernetesConfig(dataset_volumes=volume, allow_host_path=True).allow_host_path
    with pytest.raises(ValueError, match="proxy_token"):
        KubernetesConfig(proxy_api_url="http://proxy-api:8001")


async def test_kubernetes_fake_api_launch_to_ready(kube: Kube, tmp_path: Path) -> None:
    """Pod + Secret created; the token only in the Secret; labels, datasets only where asked, progress from the watch."""
    fake = kube.fake
    backend = make_backend(tmp_path, kube)
    await backend.start()
    events = await collect(launch_on(backend, request("launch_K8S-0001", data=["10.5281/zenodo.1"])))
    ready, name = events[-1], object_name("launch_K8S-0001")
    assert ready.phase == "ready" and ready.url == f"https://nb.example.org/{name}/" and ready.token
    assert [e.message for e in events[:-1]][-1] == f"Pod {name} is Running\n"
    pod, secret = fake.objects["pods"][(NS, name)], fake.objects["secrets"][(NS, name)]
    assert base64.b64decode(secret["data"]["token"]).decode() == ready.token
    assert ready.token not in str(pod), "the token must not be in the pod spec (env literal, args or probe)"
    container = pod["spec"]["containers"][0]
    assert container["env"] == [{"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}}]
    assert f"--ServerApp.base_url=/{name}/" in container["args"] and "httpHeaders" not in container["readinessProbe"]["httpGet"]
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "binder-federation" and labels["launch-id"] == name[4:] and labels["federation-member"] == "test-member"
    assert pod["metadata"]["annotations"]["binder-federation/launch-id"] == "launch_K8S-0001"
    assert container["volumeMounts"] == [{"name": "dataset-0", "mountPath": "/data/climate", "readOnly": True}]
    assert pod["spec"]["enableServiceLinks"] is False and pod["spec"]["activeDeadlineSeconds"] == 21600 + 60
    assert fake.requests["get", "pods"] == 0, "progress comes from the watch, not from polling the pod"
    assert (await backend.health())[0].ok and backend.versions() == {"kubernetes": "v1.30.0-fake"}
    # A launch that does not ask for the dataset does not get its volume.
    await collect(launch_on(backend, request("launch-k8s-0001b")))
    assert fake.objects["pods"][(NS, object_name("launch-k8s-0001b"))]["spec"]["volumes"] == []
    await backend.stop()
    assert fake.objects["pods"] == {} and fake.objects["secrets"] == {}


async def test_kubernetes_fake_api_capacity_from_quota(kube: Kube, tmp_path: Path) -> None:
    """A ResourceQuota's pods limit lowers max_servers, and a full member fails 429 without creating anything."""
    kube.fake.add_quota(NS, pods=1)
    backend = make_backend(tmp_path, kube, max_servers=5)
    await backend.start()
    try:
        # Both informers: until the pods one has synced the backend claims no capacity at all
        # (it cannot count its servers), which under load came after the quota (CI: 0 == 1).
        await until(lambda: backend.quotas.items and backend.pods.synced.is_set())
        assert (await backend.capacity()).total == 1
        assert (await collect(launch_on(backend, request("launch-k8s-0002"))))[-1].phase == "ready"
        capacity = await backend.capacity()
        assert (capacity.total, capacity.used, capacity.building) == (1, 1, 0)
        refused = await collect(launch_on(backend, request("launch-k8s-0003")))
        assert [(e.phase, e.status_code) for e in refused] == [("failed", 429)]
        assert len(kube.fake.pods(NS)) == 1
    finally:
        await backend.stop()  # also when an assertion fails: a leaked client fails the next test


async def test_kubernetes_fake_api_concurrent_launches_reserve_atomically(kube: Kube, tmp_path: Path) -> None:
    """Six launches at once on a member with two slots: exactly two start, four get 429, no pod beyond the limit."""
    backend = make_backend(tmp_path, kube, max_servers=2)
    await backend.start()
    results = await asyncio.gather(*(collect(launch_on(backend, request(f"launch-k8s-c{n}"))) for n in range(6)))
    ends = sorted((r[-1].phase, r[-1].status_code) for r in results)
    assert ends == [("failed", 429)] * 4 + [("ready", None)] * 2, ends
    assert len(kube.fake.created) == 4  # two pods, two Secrets
    await backend.stop()


@pytest.mark.parametrize("failure", ["image-pull-error", "start-timeout", "unschedulable"])
async def test_kubernetes_fake_api_failure_midway_cleans_up(kube: Kube, tmp_path: Path, failure: str) -> None:
    """A launch failing after the pod exists deletes pod and Secret; an unschedulable pod fails fast with the scheduler's reason."""
    fake = kube.fake
    fake.fail_pods = failure == "image-pull-error"
    fake.unschedulable = "0/3 nodes are available: 3 Insufficient memory." if failure == "unschedulable" else None
    fake.ready_delay = 30 if failure == "start-timeout" else 0.05
    backend = make_backend(tmp_path, kube, start_timeout=2, unschedulable_grace=0.2)
    await backend.start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    events = await collect(launch_on(backend, request("launch-k8s-0004")))
    took = loop.time() - began
    assert events[-1].phase == "failed"
    assert events[-1].status_code == {"image-pull-error": 503, "start-timeout": 504, "unschedulable": 429}[failure]
    if failure == "unschedulable":
        assert "Insufficient memory" in events[-1].message and took < 1.5, (events[-1].message, took)
    if failure == "image-pull-error":
        assert "ErrImagePull" in events[-1].message
    assert fake.objects["pods"] == {} and fake.objects["secrets"] == {}
    assert f"pods/{object_name('launch-k8s-0004')}" in fake.deleted
    await backend.stop()


async def test_kubernetes_fake_api_stop_server_deletes(kube: Kube, tmp_path: Path) -> None:
    """stop_server deletes pod and Secret; capacity follows the watch; a second stop finds nothing."""
    backend = make_backend(tmp_path, kube)
    await backend.start()
    await collect(launch_on(backend, request("launch-k8s-0005")))
    assert (await backend.capacity()).used == 1
    assert await backend.stop_server("launch-k8s-0005") is True
    assert kube.fake.objects["pods"] == {} and kube.fake.objects["secrets"] == {}
    await until(lambda: not backend.pods.items)
    assert (await backend.capacity()).used == 0
    assert await backend.stop_server("launch-k8s-0005") is False
    await backend.stop()


async def test_kubernetes_fake_api_stop_deletes_all_and_leaves_others(kube: Kube, tmp_path: Path) -> None:
    """stop() deletes every pod/Secret of this member, and nothing else."""
    backend = make_backend(tmp_path, kube)
    await backend.start()
    for n in range(3):
        assert (await collect(launch_on(backend, request(f"launch-k8s-01{n}0"))))[-1].phase == "ready"
    kube.fake.put("pods", NS, {"metadata": {"name": "someone-else", "labels": {"app": "other"}}, "status": {"phase": "Running"}})
    await backend.stop()
    assert list(kube.fake.objects["pods"]) == [(NS, "someone-else")] and kube.fake.objects["secrets"] == {}


async def test_kubernetes_fake_api_unreachable_is_unhealthy_and_fails_503(tmp_path: Path) -> None:
    """Against no API server at all: health not ok, capacity zero, launch failed 503."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    backend = make_backend(tmp_path, Kube(None, kubeconfig, ""), request_timeout=0.5)  # type: ignore[arg-type]
    await backend.start()
    assert not (await backend.health())[0].ok and (await backend.capacity()).total == 0
    events = await collect(launch_on(backend, request("launch-k8s-0007")))
    assert [(e.phase, e.status_code) for e in events] == [("failed", 503)]
    assert await backend.adopt() == []
    await backend.stop()


async def test_kubernetes_fake_api_consumer_leaving_mid_launch_deletes_the_pod(kube: Kube, tmp_path: Path) -> None:
    """Closing the launch stream before ready (the broker hung up) deletes what was created."""
    kube.fake.ready_delay = 10
    backend = make_backend(tmp_path, kube)
    await backend.start()
    events = launch_on(backend, request("launch-k8s-0008"))
    async for event in events:
        if event.message.startswith("Pod ") and "Pending" in event.message:
            break
    await events.aclose()
    assert kube.fake.objects["pods"] == {} and kube.fake.objects["secrets"] == {}
    await backend.stop()


async def test_kubernetes_fake_api_without_public_url_fails_503_and_cleans_up(kube: Kube, tmp_path: Path) -> None:
    """A ready URL that would not be absolute is a site misconfiguration, not a launch."""
    backend = make_backend(tmp_path, kube, public_url="")
    await backend.start()
    events = await collect(launch_on(backend, request("launch-k8s-0009")))
    assert events[-1].status_code == 503 and "url_template" in events[-1].message
    assert kube.fake.objects["pods"] == {}
    await backend.stop()


async def test_kubernetes_fake_api_pod_deleted_mid_launch_fails_at_once(kube: Kube, tmp_path: Path) -> None:
    """Someone deletes the starting pod (an admin, an eviction): the launch fails now, not at start_timeout."""
    kube.fake.ready_delay = 30
    backend = make_backend(tmp_path, kube, start_timeout=20)
    await backend.start()
    name = object_name("launch-k8s-gone")

    async def delete_when_created() -> None:
        await until(lambda: (NS, name) in kube.fake.objects["pods"])
        kube.fake.remove("pods", NS, name)

    deleter = asyncio.create_task(delete_when_created())
    events = await collect(launch_on(backend, request("launch-k8s-gone")))
    await deleter
    assert (events[-1].status_code, "deleted" in events[-1].message) == (503, True)
    assert kube.fake.objects["secrets"] == {}
    await backend.stop()


async def test_kubernetes_fake_api_unreadable_proxy_token_fails_launches_and_health(kube: Kube, tmp_path: Path) -> None:
    """A proxy configured without its token file: the agent starts, says why in /health, and launches fail 503, cleaned up."""
    backend = make_backend(tmp_path, kube, proxy_api_url="http://127.0.0.1:9", proxy_token={"token_file": str(tmp_path / "missing")})
    await backend.start()
    proxy_check = (await backend.health())[1]
    assert proxy_check.service == "Proxy" and not proxy_check.ok and "missing" in proxy_check.detail["error"]
    events = await collect(launch_on(backend, request("launch-k8s-noroute")))
    assert events[-1].status_code == 503 and "cannot be routed" in events[-1].message
    assert kube.fake.objects["pods"] == {} and kube.fake.objects["secrets"] == {}
    await backend.stop()


async def test_kubernetes_fake_api_calls_stay_within_the_charts_role(kube: Kube, tmp_path: Path) -> None:
    """Every API call of a launch, a stop, an adoption and a shutdown is a verb the member chart's Role grants."""
    import yaml

    template = (Path(__file__).resolve().parents[2] / "charts/federation-member/templates/rbac.yaml").read_text()
    rules = yaml.safe_load(template[template.index("rules:"):template.index("---")])["rules"]
    granted = {(verb, resource) for rule in rules for resource in rule["resources"] for verb in rule["verbs"]}
    kube.fake.add_quota(NS, pods=5)
    backend = make_backend(tmp_path, kube)
    await backend.start()
    await collect(launch_on(backend, request("launch-rbac-1")))
    await collect(launch_on(backend, request("launch-rbac-2")))
    await backend.stop_server("launch-rbac-1")
    await backend.adopt()
    await backend.stop()
    used = {key for key in kube.fake.requests if key != ("get", "version")}  # /version: open to every authenticated user
    assert used and used <= granted, used - granted
