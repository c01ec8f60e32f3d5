"""Generate each chart's ``values.schema.json`` from the config models plus the chart's own keys.

    python charts/generate_schemas.py           # rewrite both schemas
    python charts/generate_schemas.py --check   # exit 1 if a checked-in schema is stale

The ``config`` key of each chart is the config file the chart renders (``broker.toml``,
``member.toml``), so its schema is the pydantic model's schema, minus the keys the chart owns
(where the process listens, where keys and secrets are mounted). Everything else in a schema is
the chart's own values (replicas, image, ingress, ...), described here once.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

CHARTS = Path(__file__).resolve().parent
DRAFT = "http://json-schema.org/draft-07/schema#"
# Draft-07 `definitions` so both Helm 3 (draft-07) and Helm 4 (2020-12) resolve the references.
REF_TEMPLATE = "#/definitions/{model}"

# Keys of broker.toml the chart sets itself; values may not override them.
BROKER_OWNED = ("host", "port", "keys_dir", "db_url", "db_url_file", "base_dir")
# Keys of member.toml's [member] table the chart sets itself.
MEMBER_OWNED = ("host", "port", "state_dir")

Schema = dict[str, Any]


# -- small builders for the charts' own keys ------------------------------------------------
def obj(description: str, properties: dict[str, Schema] | None = None, *, free: bool = False, **extra: Any) -> Schema:
    """An object; ``free`` objects are passed to Kubernetes as they are (resources, affinity)."""
    schema: Schema = {"type": "object", "description": description}
    if properties is not None:
        schema["properties"] = properties
    schema["additionalProperties"] = free or properties is None
    schema.update(extra)
    return schema


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, **extra}


def boolean(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def string_map(description: str) -> Schema:
    return {"type": "object", "description": description, "additionalProperties": {"type": "string"}}


def array(description: str, items: Schema | None = None) -> Schema:
    return {"type": "array", "description": description, "items": items or {"type": "object"}}


def image() -> Schema:
    return obj(
        "Container image of the process.",
        {
            "repository": string("Image repository.", minLength=1),
            "tag": string("Image tag; empty means the chart's appVersion."),
            "pullPolicy": string("Kubernetes imagePullPolicy.", enum=["Always", "IfNotPresent", "Never"]),
        },
        required=["repository"],
    )


def common() -> dict[str, Schema]:
    """Keys both charts have."""
    return {
        "global": obj("Helm's global values (unused; allowed so the chart works as a subchart).", free=True),
        "image": image(),
        "imagePullSecrets": array("Secrets for pulling the image: [{name: ...}]."),
        "nameOverride": string("Replaces the chart name in resource names."),
        "fullnameOverride": string("Replaces the whole resource name prefix."),
        "resources": obj("Container resource requests and limits.", free=True),
        "podSecurityContext": obj("Pod securityContext (non-root uid, fsGroup, seccomp).", free=True),
        "securityContext": obj("Container securityContext (read-only root fs, no privilege escalation, no capabilities).", free=True),
        "podAnnotations": string_map("Extra annotations on the pods."),
        "podLabels": string_map("Extra labels on the pods."),
        "nodeSelector": string_map("Node labels the pods must run on."),
        "tolerations": array("Pod tolerations."),
        "priorityClassName": string("PriorityClass of the pods; empty for the cluster default."),
        "terminationGracePeriodSeconds": integer("Seconds a pod gets to finish open streams on shutdown.", minimum=0),
        "affinity": obj("Pod affinity rules (passed through).", free=True),
        "extraEnv": array("More environment variables of the main container (EnvVar objects)."),
        "extraVolumes": array("More volumes of the pod."),
        "extraVolumeMounts": array("More volume mounts of the main container."),
        "extraContainers": array("Sidecar containers added to the pod."),
    }


def service() -> Schema:
    return obj(
        "The Service in front of the pods.",
        {
            "type": string("Service type.", enum=["ClusterIP", "NodePort", "LoadBalancer"]),
            "port": integer("Service port.", minimum=1, maximum=65535),
            "annotations": string_map("Annotations on the Service."),
        },
    )


def ingress(what: str) -> Schema:
    return obj(
        f"The Ingress that {what}.",
        {
            "enabled": boolean("Create the Ingress."),
            "className": string("ingressClassName; empty for the cluster default."),
            "host": string("Public host name.", minLength=1),
            "annotations": string_map("Annotations, e.g. for cert-manager or to turn off response buffering."),
            "tls": obj(
                "TLS on the Ingress.",
                {
                    "enabled": boolean("Terminate TLS for the host."),
                    "secretName": string("TLS Secret; empty means '<fullname>-tls'."),
                },
            ),
        },
    )


def probes(default: str) -> Schema:
    return obj(
        "HTTP paths of the probes.",
        {
            "livenessPath": string(f"Liveness probe path (default {default}).", pattern="^/"),
            "readinessPath": string(f"Readiness probe path (default {default}).", pattern="^/"),
        },
    )


# -- the config models ---------------------------------------------------------------------
def model_schemas(models: list[type[BaseModel]]) -> tuple[list[Schema], dict[str, Schema]]:
    """Each model's schema with shared definitions, referenced as ``#/definitions/<name>``."""
    mapping, top = models_json_schema([(m, "validation") for m in models], ref_template=REF_TEMPLATE)
    defs = top.get("$defs", {})
    schemas = []
    for model in models:
        ref = mapping[(model, "validation")]["$ref"].rsplit("/", 1)[1]
        schemas.append(defs.pop(ref))
    return schemas, defs


def without(schema: Schema, keys: tuple[str, ...]) -> Schema:
    schema = copy.deepcopy(schema)
    for key in keys:
        schema.get("properties", {}).pop(key, None)
    if "required" in schema:
        schema["required"] = [k for k in schema["required"] if k not in keys]
    return schema


def chart_schema(title: str, properties: dict[str, Schema], definitions: dict[str, Schema], required: list[str]) -> Schema:
    return {
        "$schema": DRAFT,
        "title": title,
        "description": "Generated by charts/generate_schemas.py from the config models; do not edit.",
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
        "definitions": dict(sorted(definitions.items())),
    }


def broker_schema() -> Schema:
    from fedbroker.config import BrokerConfig

    (config,), definitions = model_schemas([BrokerConfig])
    config = without(config, BROKER_OWNED)
    config["description"] = (
        "broker.toml, rendered into a ConfigMap. host, port, keys_dir and db_url are the chart's: "
        "the database URL and the keys come from Secrets."
    )
    properties = {
        "replicas": integer("Broker processes; more than one needs a PostgreSQL registry.", minimum=1),
        **common(),
        "config": config,
        "database": obj(
            "Where the registry's SQLAlchemy URL (postgresql+asyncpg://...) is kept.",
            {
                "secretName": string("Secret holding the URL; empty means '<fullname>-db'."),
                "secretKey": string("Key of the URL in that Secret.", minLength=1),
            },
        ),
        "keys": obj(
            "The broker's Ed25519 signing keys.",
            {"secretName": string("Secret whose keys are ed25519-<µs>.pem files; empty means '<fullname>-keys'.")},
        ),
        "migrations": obj(
            "Registry schema upgrades: the broker refuses an older schema unless config.migrate_on_start.",
            {
                "job": obj(
                    "An opt-in pre-upgrade Job running `fedbroker migrate` with the new image (back the database up first).",
                    {
                        "enabled": boolean("Run it before each `helm upgrade` rolls the broker."),
                        "activeDeadlineSeconds": integer("Seconds before a hanging migration fails the upgrade.", minimum=30),
                    },
                ),
            },
        ),
        "service": service(),
        "ingress": ingress("publishes the broker (the federation's public URL)"),
        "podDisruptionBudget": obj(
            "PodDisruptionBudget of the replicas.",
            {
                "enabled": boolean("Create the PodDisruptionBudget."),
                "maxUnavailable": integer("Replicas a voluntary disruption may take down at once.", minimum=1),
            },
        ),
        "antiAffinity": string("Spread replicas over nodes: soft prefers, hard requires.", enum=["soft", "hard"]),
        "probes": probes("/versions; never /health, which is 503 while no member is routable"),
        "metrics": obj(
            "Prometheus scraping.",
            {
                "scrapeAnnotations": boolean("Put prometheus.io/scrape, /port and /path annotations on the pods."),
                "serviceMonitor": obj(
                    "A prometheus-operator ServiceMonitor.",
                    {
                        "enabled": boolean("Create the ServiceMonitor (needs the prometheus-operator CRDs)."),
                        "interval": string("Scrape interval.", pattern="^[0-9]+(ms|s|m|h)$"),
                        "labels": string_map("Labels your Prometheus selects ServiceMonitors by."),
                    },
                ),
            },
        ),
        "dashboard": obj(
            "The Grafana dashboard ConfigMap.",
            {
                "enabled": boolean("Ship dashboards/broker.json as a ConfigMap."),
                "labels": string_map("Labels the Grafana sidecar looks for (grafana_dashboard)."),
                "annotations": string_map("Annotations, e.g. the sidecar's target folder."),
            },
        ),
    }
    return chart_schema("federation-broker values", properties, definitions, ["replicas", "image", "config"])


def backend_configs() -> tuple[list[type[BaseModel]], list[str]]:
    """The Config model of every backend that can be imported, and the kinds that cannot."""
    from fedmember.backends import BACKEND_MODULES

    found, missing = [], []
    for kind, target in BACKEND_MODULES.items():
        module_name, _, class_name = target.partition(":")
        try:
            found.append(getattr(importlib.import_module(module_name), class_name).Config)
        except (ImportError, AttributeError):
            missing.append(kind)
    return found, missing


def member_schema() -> Schema:
    from fedmember.config import BrokerSettings, MemberSettings

    backends, _ = backend_configs()
    (member, broker, *backend_schemas), definitions = model_schemas([MemberSettings, BrokerSettings, *backends])
    member = without(member, MEMBER_OWNED)
    config = {
        "type": "object",
        "description": "member.toml, rendered into a ConfigMap. [member] host, port and state_dir are the chart's.",
        "additionalProperties": False,
        "required": ["member", "backend"],
        "properties": {
            "member": member,
            "broker": broker,
            "backend": {"description": "`kind` and the backend's own settings.", "oneOf": backend_schemas},
        },
    }
    dataset = obj(
        "A dataset stored at this site, from a PersistentVolumeClaim mounted read-only.",
        {
            "id": string("Dataset identifier (DOI, URL, bucket path or a prefix of them).", minLength=1),
            "prefix": boolean("Match every dataset id that starts with `id`."),
            "size_bytes": integer("Size on disk, when known.", minimum=0),
            "claimName": string("The PersistentVolumeClaim holding it (in the release namespace).", minLength=1),
            "mountPath": string("Where the agent and launched servers see it.", pattern="^/"),
        },
        required=["id", "claimName", "mountPath"],
    )
    properties = {
        **common(),
        "config": config,
        "keys": obj(
            "The member's identity from `fedmember init` and `fedmember enroll`.",
            {"secretName": string("Secret with keys/ files (ed25519-<µs>.pem) and broker.jwks.json; empty means '<fullname>-keys'.")},
        ),
        "backendSecret": obj(
            "API tokens of the backend (BinderHub, JupyterHub), mounted as files under /run/fedmember/backend.",
            {"secretName": string("Secret to mount; name its files in config.backend, e.g. api_token.token_file. Empty: none.")},
        ),
        "datasets": array("Datasets stored here: listed in [member] datasets and mounted read-only.", dataset),
        "rbac": obj(
            "Role and RoleBinding for the kubernetes backend, in config.backend.namespace or the release namespace; only the verbs it uses.",
            {"create": boolean("Create them when config.backend.kind is kubernetes.")},
        ),
        "serviceAccount": obj(
            "The agent's ServiceAccount.",
            {
                "create": boolean("Create it."),
                "name": string("Its name; empty means the release fullname."),
                "annotations": string_map("Annotations on it."),
            },
        ),
        "launches": obj(
            "Where the kubernetes backend's servers run (config.backend.namespace, default '<release namespace>-launches').",
            {
                "createNamespace": boolean("Create the launch namespace, enforcing Pod Security 'restricted'."),
                "networkPolicy": obj(
                    "Default-deny NetworkPolicy of launched pods; the metadata endpoint 169.254.169.254 is always blocked.",
                    {
                        "enabled": boolean("Create it."),
                        "egress": obj(
                            "Where launched servers may connect.",
                            {
                                "dns": boolean("DNS (port 53)."),
                                "internet": boolean("Public addresses (no private or link-local ranges)."),
                                "privateIPs": boolean("10/8, 172.16/12 and 192.168/16."),
                                "extraRules": array("More NetworkPolicyEgressRules to pods or namespaces; ipBlock is refused."),
                            },
                        ),
                    },
                ),
            },
        ),
        "proxy": obj(
            "configurable-http-proxy routing {public_url}/<name>/ to launched pods (kubernetes backend).",
            {
                "enabled": boolean("Run it when config.backend.kind is kubernetes."),
                "image": obj(
                    "Its image.",
                    {
                        "repository": string("Image repository.", minLength=1),
                        "tag": string("Image tag.", minLength=1),
                        "digest": string("sha256 digest pinning the tag; empty: the tag alone.", pattern="^(sha256:[0-9a-f]{64})?$"),
                        "pullPolicy": string("Kubernetes imagePullPolicy.", enum=["Always", "IfNotPresent", "Never"]),
                    },
                ),
                "tokenSecret": obj(
                    "Secret with the proxy API token, shared by the proxy and the agent.",
                    {"name": string("Its name; empty means '<fullname>-proxy-token'."), "key": string("Key of the token.", minLength=1)},
                ),
                "service": service(),
                "ingress": ingress("publishes the proxy at the member's public_url"),
                "resources": obj("Container resource requests and limits.", free=True),
            },
        ),
        "service": service(),
        "ingress": ingress("lets the broker reach the agent (its agent_url, https)"),
        "probes": probes("/.well-known/jwks.json"),
        "metrics": obj(
            "Prometheus scraping.",
            {"scrapeAnnotations": boolean("Put prometheus.io/scrape, /port and /path annotations on the pod.")},
        ),
    }
    return chart_schema("federation-member values", properties, definitions, ["image", "config"])


SCHEMAS = {
    "federation-broker": broker_schema,
    "federation-member": member_schema,
}


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Fail if a checked-in schema differs; write nothing.")
    args = parser.parse_args(argv)
    _, missing = backend_configs()
    if missing:
        print(f"note: backends not importable, left out of the member schema: {', '.join(missing)}", file=sys.stderr)
    stale = []
    for chart, build in SCHEMAS.items():
        path = CHARTS / chart / "values.schema.json"
        text = render(build())
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale, run `python charts/generate_schemas.py`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
