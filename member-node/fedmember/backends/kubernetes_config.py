"""Settings of the ``kubernetes`` backend (the member chart's values schema is generated from them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import BackendConfig, RepoRule
from .kubernetes_pods import DatasetVolume
from .secrets import TokenSource


class ImageRule(RepoRule):
    """Run repos whose key matches ``match`` with ``image``."""

    image: str = Field(description="The prebuilt image to run for those repos.")


class KubernetesConfig(BackendConfig):
    """Settings of the ``kubernetes`` backend."""

    kind: Literal["kubernetes"] = "kubernetes"
    namespace: str = Field(default="binder-federation-launches", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                           description="Namespace the pods and their Secrets go in: keep it apart from the agent's (anyone who reads Secrets there reads the tokens).")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig file; unset means in-cluster (the pod's service account).")
    kube_context: str | None = Field(default=None, description="Context inside the kubeconfig (default: its current context).")
    default_image: str = Field(default="quay.io/jupyter/base-notebook:latest", description="Image for repos no rule matches.")
    image_rules: list[ImageRule] = Field(default_factory=list, description="Repo → image rules, first match wins.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(default="IfNotPresent", description="The containers' imagePullPolicy.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Names of Secrets (in `namespace`) to pull images with.")
    url_template: str = Field(default="{public_url}/{name}/", description="Server URL; {public_url} (the member's), {name}, {namespace}.")
    base_url_template: str = Field(default="/{name}/", description="jupyter-server's base_url; must match the path the proxy routes.")
    server_port: int = Field(default=8888, ge=1, le=65535, description="Port jupyter-server listens on in the pod.")
    max_servers: int = Field(default=10, ge=0, description="Servers this member runs at once (a ResourceQuota may lower it).")
    start_timeout: float = Field(default=300.0, gt=0, description="Seconds for a pod to become Ready before the launch fails with 504.")
    unschedulable_grace: float = Field(default=15.0, ge=0, description="Seconds a pod may stay unschedulable (time for a cluster autoscaler to add a node) before the launch fails with the scheduler's reason.")
    request_timeout: float = Field(default=10.0, gt=0, description="Seconds for each Kubernetes API call.")
    resources: dict[str, dict[str, str]] = Field(default_factory=dict, description="The container's resources (requests/limits).")
    dataset_volumes: dict[str, DatasetVolume] = Field(default_factory=dict, description="Dataset volumes, mounted read-only into the servers that need them.")
    allow_host_path: bool = Field(default=False, description="Allow hostPath dataset volumes. Pods using one fail Pod Security 'restricted': only for a namespace that allows it.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of the pods.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Tolerations of the pods (e.g. for a dedicated user node pool).")
    priority_class_name: str | None = Field(default=None, description="priorityClassName of the pods.")
    extra_labels: dict[str, str] = Field(default_factory=dict, description="More labels on pods and Secrets.")
    run_as_user: int = Field(default=1000, ge=1, description="Non-root uid the server runs as (also the pod's fsGroup).")
    idle_timeout: float | None = Field(default=600.0, gt=0, description="Seconds without activity after which a server is stopped: jupyter-server shuts itself down, and the agent culls by its /api/status (unset: never).")
    max_age: float | None = Field(default=21600.0, gt=0, description="Seconds after which a server is stopped however busy (unset: never). The pod's activeDeadlineSeconds is this plus cull_interval, so Kubernetes ends it even without the agent.")
    cull_interval: float = Field(default=60.0, gt=0, description="Seconds between cull passes.")
    proxy_api_url: str | None = Field(default=None, description="configurable-http-proxy's API (e.g. http://proxy-api:8001): the agent adds a route per server. Unset: something else routes {name} paths.")
    proxy_token: TokenSource = Field(default_factory=TokenSource, description="Where the proxy's API token is (token_file or token_env).")
    route_check_interval: float = Field(default=60.0, gt=0, description="Seconds between full checks of the proxy's routes (a restarted proxy loses them).")

    @model_validator(mode="after")
    def _checks(self) -> KubernetesConfig:
        host = [name for name, v in self.dataset_volumes.items() if v.host_path is not None]
        if host and not self.allow_host_path:
            raise ValueError(f"dataset_volumes {host} use host_path: set allow_host_path = true to allow it (not Pod Security 'restricted')")
        if self.proxy_api_url and not self.proxy_token.configured:
            raise ValueError("proxy_api_url needs proxy_token (token_file or token_env)")
        return self
