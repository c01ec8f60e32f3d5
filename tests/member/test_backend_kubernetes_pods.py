"""Launched pods are Pod Security "restricted": the spec the backend sends to the FAKE API server, checked with
kubernetes-validate (Kubernetes' own schemas) and with a control-by-control policy check (tests/member/pod_security.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from fedmember.backends.kubernetes_pods import object_name, pod_state

from backend_fixtures import collect, launch_on
from kubekit import NS, Kube, kube, make_backend, request  # noqa: F401
from pod_security import violations

KUBE_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def kubernetes_validate(require_component: Any) -> Any:
    try:
        import kubernetes_validate
    except ImportError as exc:
        require_component(False, f"kubernetes-validate is not installed: {exc}")
    return kubernetes_validate


async def _launched_pod(kube: Kube, tmp_path: Path, **config: Any) -> dict[str, Any]:
    backend = make_backend(tmp_path, kube, resources={"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                           tolerations=[{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}],
                           priority_class_name="binder-users", image_pull_secrets=["registry-creds"], node_selector={"pool": "users"}, **config)
    await backend.start()
    events = await collect(launch_on(backend, request("launch-psa-1", data=["10.5281/zenodo.1"])))
    assert events[-1].phase == "ready", events[-1].message
    pod = copy.deepcopy(kube.fake.objects["pods"][(NS, object_name("launch-psa-1"))])
    await backend.stop()
    for key in ("status",):
        pod.pop(key, None)
    for key in ("uid", "creationTimestamp", "resourceVersion", "namespace"):
        pod["metadata"].pop(key, None)
    return pod


async def test_kubernetes_fake_api_pod_spec_is_restricted_psa_compliant(kube: Kube, tmp_path: Path, kubernetes_validate: Any) -> None:
    """The pod the backend created validates against Kubernetes' schema and breaks no control of "restricted"."""
    pod = await _launched_pod(kube, tmp_path)
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
    assert violations(pod["spec"]) == []
    spec = pod["spec"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"} and spec["automountServiceAccountToken"] is False
    assert spec["tolerations"][0]["key"] == "hub.jupyter.org/dedicated" and spec["priorityClassName"] == "binder-users"
    assert spec["imagePullSecrets"] == [{"name": "registry-creds"}] and spec["nodeSelector"] == {"pool": "users"}


async def test_kubernetes_fake_api_host_path_pod_fails_the_policy(kube: Kube, tmp_path: Path, kubernetes_validate: Any) -> None:
    """hostPath only behind allow_host_path, and then the policy check says the pod is not "restricted"."""
    volumes = {"bulk": {"mount_path": "/data/bulk", "host_path": "/srv/bulk"}}
    pod = await _launched_pod(kube, tmp_path, dataset_volumes=volumes, allow_host_path=True)
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
    assert violations(pod["spec"]) == ["hostPath volume dataset-0", "volume type ['hostPath'] of dataset-0"]


@pytest.mark.parametrize(("change", "control"), [
    (lambda s: s["securityContext"].pop("seccompProfile") and s["containers"][0]["securityContext"].pop("seccompProfile"), "seccompProfile"),
    (lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    (lambda s: s["containers"][0]["securityContext"].update(capabilities={"add": ["NET_ADMIN"]}), "capabilities"),
    (lambda s: s["securityContext"].update(runAsNonRoot=False) or s["containers"][0]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    (lambda s: s.update(hostNetwork=True), "host namespaces"),
], ids=["no-seccomp", "escalation", "net-admin", "root", "host-network"])
def test_policy_check_catches_each_control(change: Any, control: str) -> None:
    """The policy check is not a rubber stamp: break one control of a compliant spec and it names it."""
    from fedmember.backends.kubernetes_pods import PodSpec, pod_manifest

    spec = pod_manifest(name="fed-x", labels={}, launch_id="l", image="i", base_url="/fed-x/", origins=[], volumes={}, spec=PodSpec())["spec"]
    assert violations(spec) == []
    change(spec)
    assert any(control in v for v in violations(spec)), violations(spec)


@pytest.mark.parametrize(("status", "expect"), [
    ({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/3 nodes are available: 3 Insufficient cpu."}]},
     ("Pending", False, "no node can run it: 0/3 nodes are available: 3 Insufficient cpu.")),
    ({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}}]},
     ("Pending", False, "ImagePullBackOff: back-off")),
    ({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}, ("Pending", False, None)),
    ({"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}, ("Running", True, None)),
    ({}, ("Pending", False, None)),
], ids=["unschedulable", "image-pull", "creating", "ready", "no-status"])
def test_pod_state_reads_the_status(status: dict[str, Any], expect: tuple[Any, ...]) -> None:
    state = pod_state({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": status})
    assert (state.phase, state.ready, state.problem) == expect


@pytest.mark.parametrize(("wanted", "existing", "add", "remove"), [
    ({"/a": "http://1"}, {}, {"/a": "http://1"}, []),
    ({"/a": "http://1"}, {"/a": "http://1"}, {}, []),
    ({"/a": "http://2"}, {"/a": "http://1"}, {"/a": "http://2"}, []),
    ({}, {"/a": "http://1", "/b": "http://2"}, {}, ["/a", "/b"]),
], ids=["missing", "in-place", "moved-pod", "stale"])
def test_route_plan(wanted: dict[str, str], existing: dict[str, str], add: dict[str, str], remove: list[str]) -> None:
    from fedmember.backends.kubernetes_routes import plan

    assert plan(wanted, existing) == (add, remove)
