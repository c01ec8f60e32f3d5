"""Pod and Secret manifests of the ``kubernetes`` backend, its labels and names, and what a pod's status says.

Pure functions over plain dicts (the JSON the API server takes and gives), so the
pod spec is tested without a cluster and the backend modules keep only the I/O.

A launched pod passes Pod Security "restricted": non-root with a fixed uid,
RuntimeDefault seccomp, every capability dropped, no privilege escalation, no
service account token, no service links, only PVC/CSI/Secret-free volumes
(hostPath only when the operator turns ``allow_host_path`` on, which
"restricted" then rejects). The notebook token is in a per-launch Secret, read
through ``secretKeyRef``: never a literal in the pod spec, never in a probe.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedproto.datasets import Dataset

APP_LABEL = "binder-federation"
TOKEN_ENV = "JUPYTER_TOKEN"
TOKEN_KEY = "token"
LAUNCH_ANNOTATION = "binder-federation/launch-id"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


class DatasetVolume(BaseModel):
    """A dataset stored at the site, mounted read-only into the servers that ask for it."""

    model_config = ConfigDict(extra="forbid")

    mount_path: str = Field(pattern=r"^/[^:]*$", description="Where servers see the dataset (read-only).")
    claim_name: str | None = Field(default=None, description="A PersistentVolumeClaim holding the dataset (ReadOnlyMany).")
    csi: dict[str, Any] | None = Field(default=None, description="A CSI volume source (`driver`, `volumeAttributes`, ...); mounted read-only.")
    host_path: str | None = Field(default=None, pattern=r"^/", description="A directory on every node; needs the backend's `allow_host_path`.")
    dataset_id: str | None = Field(default=None, description="The dataset id this volume holds: mounted only into launches that need it (unset: into every launch).")
    prefix: bool = Field(default=False, description="`dataset_id` is a prefix: the volume serves every dataset id starting with it.")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetVolume:
        if sum(x is not None for x in (self.claim_name, self.csi, self.host_path)) != 1:
            raise ValueError("set exactly one of claim_name, csi or host_path")
        return self

    def used_by(self, needed: list[str]) -> bool:
        if self.dataset_id is None:
            return True
        held = Dataset(id=self.dataset_id, prefix=self.prefix)
        return any(held.matches(wanted) for wanted in needed)

    def source(self) -> dict[str, Any]:
        if self.claim_name is not None:
            return {"persistentVolumeClaim": {"claimName": self.claim_name, "readOnly": True}}
        if self.csi is not None:
            return {"csi": {**self.csi, "readOnly": True}}
        return {"hostPath": {"path": self.host_path, "type": "Directory"}}


@dataclass(frozen=True)
class PodState:
    """What the backend needs of a pod, read once from its JSON."""

    name: str
    launch_id: str | None
    phase: str
    ready: bool
    ip: str | None
    created: float | None
    deleting: bool
    problem: str | None  # why it cannot start: a stuck container or the scheduler's word

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or self.deleting


_STUCK_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError"})


def pod_state(pod: dict[str, Any]) -> PodState:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    problem = None
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK_REASONS:
            problem = f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        problem = f"no node can run it: {scheduled.get('message', 'unschedulable')}"
    created = meta.get("creationTimestamp")
    return PodState(
        name=meta.get("name", ""),
        launch_id=(meta.get("annotations") or {}).get(LAUNCH_ANNOTATION),
        phase=status.get("phase") or "Pending",
        ready=(conditions.get("Ready") or {}).get("status") == "True",
        ip=status.get("podIP"),
        created=datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else None,
        deleting=bool(meta.get("deletionTimestamp")),
        problem=problem,
    )


def label_value(value: str) -> str:
    """A valid label value (63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE.sub("-", value)[:63].strip("-_.")
    return cleaned or "none"


def launch_key(launch_id: str) -> str:
    """A DNS-1123-safe stand-in for the launch id (ids may hold `_` and capitals, names may not)."""
    return hashlib.sha256(launch_id.encode()).hexdigest()[:16]


def object_name(launch_id: str) -> str:
    return f"fed-{launch_key(launch_id)}"


def selector(member_id: str) -> str:
    """The label selector of every pod and secret this member's agent created."""
    return f"app={APP_LABEL},component=singleuser,federation-member={label_value(member_id)}"


def labels(member_id: str, launch_id: str, repo_hash: str, extra: dict[str, str]) -> dict[str, str]:
    return {
        **extra,
        "app": APP_LABEL,
        "component": "singleuser",
        "federation-member": label_value(member_id),
        "launch-id": launch_key(launch_id),
        "repo-hash": repo_hash,
    }


def server_args(port: int, base_url: str, origins: list[str], idle_timeout: float | None) -> list[str]:
    """jupyter-server's command line; only operator-controlled values reach it (the token is an env var).

    With ``idle_timeout`` the server shuts itself down when idle (kernels culled first), so a
    session ends even while the agent is away; the agent then reaps the finished pod.
    """
    args = ["jupyter", "server", "--ip=0.0.0.0", f"--port={port}", "--no-browser", f"--ServerApp.base_url={base_url}"]
    if idle_timeout:
        seconds = int(idle_timeout)
        args += [f"--ServerApp.shutdown_no_activity_timeout={seconds}", f"--MappingKernelManager.cull_idle_timeout={seconds}",
                 "--MappingKernelManager.cull_interval=60"]
    if origins:
        pattern = "^(" + "|".join(re.escape(o) for o in origins) + ")$"
        args.append(f"--ServerApp.allow_origin_pat={pattern}")
    return args


@dataclass
class PodSpec:
    """The operator's choices for every launched pod (from the backend config)."""

    image_pull_policy: str = "IfNotPresent"
    port: int = 8888
    run_as_user: int = 1000
    resources: dict[str, Any] | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    priority_class_name: str | None = None
    image_pull_secrets: list[str] | None = None
    active_deadline: int | None = None
    idle_timeout: float | None = None


def pod_manifest(*, name: str, labels: dict[str, str], launch_id: str, image: str, base_url: str, origins: list[str],
                 volumes: dict[str, DatasetVolume], spec: PodSpec) -> dict[str, Any]:
    vols, mounts = [], []
    for index, (_, volume) in enumerate(sorted(volumes.items())):
        vols.append({"name": f"dataset-{index}", **volume.source()})
        mounts.append({"name": f"dataset-{index}", "mountPath": volume.mount_path, "readOnly": True})
    container = {
        "name": "notebook",
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": server_args(spec.port, base_url, origins, spec.idle_timeout),
        "env": [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": name, "key": TOKEN_KEY}}}],
        "ports": [{"name": "http", "containerPort": spec.port}],
        "resources": spec.resources or {},
        "volumeMounts": mounts,
        # /api answers without a token: the probe carries none.
        "readinessProbe": {"httpGet": {"path": f"{base_url}api", "port": spec.port}, "periodSeconds": 2},
        "securityContext": copy.deepcopy(RESTRICTED_CONTAINER),
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": vols,
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # No runAsGroup: notebook images (jovyan, uid 1000) rely on their own primary group (users, 100).
        "securityContext": {"runAsNonRoot": True, "runAsUser": spec.run_as_user, "fsGroup": spec.run_as_user,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    optional = {"nodeSelector": spec.node_selector, "tolerations": spec.tolerations, "priorityClassName": spec.priority_class_name,
                "activeDeadlineSeconds": spec.active_deadline,
                "imagePullSecrets": [{"name": s} for s in spec.image_pull_secrets or []]}
    pod.update({key: value for key, value in optional.items() if value})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": {LAUNCH_ANNOTATION: launch_id}}, "spec": pod}


def secret_manifest(*, name: str, labels: dict[str, str], launch_id: str, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": labels, "annotations": {LAUNCH_ANNOTATION: launch_id}},
            "stringData": {TOKEN_KEY: token}}


def pods_to_cull(pods: list[tuple[str, float | None]], now: float, max_age: float) -> list[str]:
    """Names of pods created more than ``max_age`` seconds before ``now`` (epoch seconds)."""
    return [name for name, created in pods if created is not None and now - created > max_age]
