"""Pod and Service manifests of the ``kubernetes`` backend, its labels and names, and which pods to cull.

Pure functions over plain dicts (the JSON the API server takes), so the pod spec is
tested without a cluster and the backend module keeps only the I/O.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

APP_LABEL = "binder-federation"
TOKEN_ENV = "JUPYTER_TOKEN"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


class DatasetVolume(BaseModel):
    """A dataset stored at the site, mounted read-only into every server."""

    model_config = ConfigDict(extra="forbid")

    mount_path: str = Field(pattern=r"^/[^:]*$", description="Where servers see the dataset (read-only).")
    claim_name: str | None = Field(default=None, description="A PersistentVolumeClaim holding the dataset.")
    host_path: str | None = Field(default=None, pattern=r"^/", description="A directory on every node holding the dataset.")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetVolume:
        if (self.claim_name is None) == (self.host_path is None):
            raise ValueError("set exactly one of claim_name or host_path")
        return self


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
    """The label selector of every pod and service this member's agent created."""
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


def server_args(port: int, base_url: str, origins: list[str]) -> list[str]:
    """jupyter-server's command line; only operator-controlled values reach it (the token is an env var)."""
    args = ["jupyter", "server", "--ip=0.0.0.0", f"--port={port}", "--no-browser", f"--ServerApp.base_url={base_url}"]
    if origins:
        pattern = "^(" + "|".join(re.escape(o) for o in origins) + ")$"
        args.append(f"--ServerApp.allow_origin_pat={pattern}")
    return args


def pod_manifest(
    *, name: str, labels: dict[str, str], launch_id: str, image: str, token: str, port: int, base_url: str,
    origins: list[str], datasets: dict[str, DatasetVolume], resources: dict[str, Any], node_selector: dict[str, str],
    run_as_user: int, image_pull_policy: str,
) -> dict[str, Any]:
    volumes, mounts = [], []
    for index, (dataset, volume) in enumerate(sorted(datasets.items())):
        vol_name = f"dataset-{index}"
        source = {"persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": True}} if volume.claim_name else {"hostPath": {"path": volume.host_path, "type": "Directory"}}
        volumes.append({"name": vol_name, **source})
        mounts.append({"name": vol_name, "mountPath": volume.mount_path, "readOnly": True})
    container = {
        "name": "notebook",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "args": server_args(port, base_url, origins),
        "env": [{"name": TOKEN_ENV, "value": token}],
        "ports": [{"name": "http", "containerPort": port}],
        "resources": resources,
        "volumeMounts": mounts,
        "readinessProbe": {"httpGet": {"path": f"{base_url}api/status", "port": port, "httpHeaders": [{"name": "Authorization", "value": f"token {token}"}]}, "periodSeconds": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": {"binder-federation/launch-id": launch_id}},
        "spec": {
            "containers": [container],
            "volumes": volumes,
            "nodeSelector": node_selector,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": run_as_user, "fsGroup": run_as_user},
        },
    }


def service_manifest(*, name: str, labels: dict[str, str], port: int, service_type: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": service_type, "selector": {"launch-id": labels["launch-id"], "app": APP_LABEL}, "ports": [{"name": "http", "port": port, "targetPort": port}]},
    }


def pods_to_cull(pods: list[tuple[str, datetime | None]], now: float, max_age: float) -> list[str]:
    """Names of pods created more than ``max_age`` seconds before ``now`` (epoch seconds)."""
    return [name for name, created in pods if created is not None and now - created.timestamp() > max_age]
