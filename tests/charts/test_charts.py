"""The Helm charts: generated schemas in sync, renders that validate against Kubernetes' schemas,
least-privilege RBAC, a locked-down broker pod, no secrets in ConfigMaps, and parseable Dockerfiles.

Charts are rendered by Helm's own Go SDK (the `helm-python-sdk` wheel bundles it; no helm binary
and no network) and every manifest is checked with `kubernetes-validate`'s offline schemas.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from fedbroker.config import BrokerConfig
from fedmember.config import MemberConfig

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
HERE = Path(__file__).resolve().parent
KUBE_VERSION = "1.30.0"  # the oldest Kubernetes the charts promise to work with (not EOL at release)
NAMESPACE = "binder"

RENDERS = {
    "broker-default": ("federation-broker", None),
    "broker-production": ("federation-broker", "values-broker-production.yaml"),
    "member-default": ("federation-member", None),
    "member-binderhub": ("federation-member", "values-member-binderhub.yaml"),
    "member-production": ("federation-member", "values-member-production.yaml"),
}
# Kinds from CRDs that kubernetes-validate has no schema for, with the fields we check by hand.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints")}
MEMBER_ROLE_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "list", "delete"]},
    {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["list", "watch"]},
]


# -- tools ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def helm(require_component: Callable[[bool, str], None]) -> Any:
    try:
        import helm_python
    except (ImportError, OSError) as exc:  # OSError: the bundled libhelm_c cannot load here
        require_component(False, f"helm-python-sdk (Helm's Go SDK for Python) is not usable: {exc}")
    return helm_python


@pytest.fixture(scope="module")
def kubernetes_validate(require_component: Callable[[bool, str], None]) -> Any:
    try:
        import kubernetes_validate
    except ImportError as exc:
        require_component(False, f"kubernetes-validate is not installed: {exc}")
    return kubernetes_validate


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_schemas", CHARTS / "generate_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def values_of(values_file: str | None) -> dict[str, Any]:
    return yaml.safe_load((HERE / values_file).read_text()) if values_file else {}


def render(helm: Any, chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest of a release of ``chart``, after checking the values against its schema."""
    with helm.Chart.load(CHARTS / chart) as loaded:
        loaded.validate_schema(values)
        rendered = loaded.render(values, name="fed", namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(rendered.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@pytest.fixture(scope="module", params=sorted(RENDERS), ids=str)
def release(request: pytest.FixtureRequest, helm: Any) -> tuple[str, list[dict[str, Any]]]:
    chart, values_file = RENDERS[request.param]
    return request.param, render(helm, chart, values_of(values_file))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def config_file(docs: list[dict[str, Any]]) -> tuple[str, str]:
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if not d["metadata"]["name"].endswith("-dashboard")]
    ((name, text),) = cm["data"].items()
    return name, text


# -- schemas -------------------------------------------------------------------------------
def test_values_schemas_are_generated_from_the_models() -> None:
    generator = load_generator()
    for chart, build in generator.SCHEMAS.items():
        checked_in = (CHARTS / chart / "values.schema.json").read_text()
        assert checked_in == generator.render(build()), (
            f"charts/{chart}/values.schema.json is stale: run `python charts/generate_schemas.py`"
        )


def test_every_backend_is_in_the_member_schema() -> None:
    _, missing = load_generator().backend_configs()
    assert not missing, f"backends whose Config cannot be imported: {missing}"


@pytest.mark.parametrize(
    ("chart", "values"),
    [
        pytest.param("federation-broker", {"config": {"db_url": "postgresql+asyncpg://u:p@db/x"}}, id="db_url comes from a Secret"),
        pytest.param("federation-broker", {"config": {"keys_dir": "/keys"}}, id="keys_dir is the chart's"),
        pytest.param("federation-broker", {"replicas": 0}, id="at least one replica"),
        pytest.param("federation-broker", {"config": {"mode": "proxy"}}, id="mode is relay or redirect"),
        pytest.param("federation-broker", {"antiAffinity": "sometimes"}, id="soft or hard"),
        pytest.param("federation-broker", {"replica": 3}, id="unknown key (a typo)"),
        pytest.param("federation-member", {"config": {"member": {"id": "Not A Label"}}}, id="member id is a DNS label"),
        pytest.param("federation-member", {"config": {"backend": {"kind": "slurm"}}}, id="unknown backend"),
        pytest.param("federation-member", {"config": {"backend": {"kind": "binderhub", "api_token": "s3cr3t"}}}, id="tokens are files"),
        pytest.param("federation-member", {"datasets": [{"id": "d", "mountPath": "/data"}]}, id="a dataset needs its claim"),
    ],
)
def test_schema_rejects(helm: Any, chart: str, values: dict[str, Any]) -> None:
    with helm.Chart.load(CHARTS / chart) as loaded, pytest.raises(helm.HelmValuesError):
        loaded.validate_schema(values)


def test_charts_lint_clean(helm: Any) -> None:
    for chart in ("federation-broker", "federation-member"):
        report = helm.lint(CHARTS / chart, strict=True, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{chart}: {problems}"


# -- every manifest ------------------------------------------------------------------------
def test_manifests_validate_against_kubernetes(release: tuple[str, list[dict[str, Any]]], kubernetes_validate: Any) -> None:
    name, docs = release
    assert docs, f"{name} rendered nothing"
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_KINDS:
            missing = [field for field in CRD_KINDS[key] if not doc["spec"].get(field)]
            assert not missing, f"{name}: {doc['kind']} lacks spec fields {missing}"
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_rendered_config_loads_with_the_models(release: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    name, docs = release
    file_name, text = config_file(docs)
    data = tomllib.loads(text)
    if file_name == "broker.toml":
        assert "db_url" not in data, "the database URL must come from the Secret"
        config = BrokerConfig.model_validate({k: v for k, v in data.items() if k != "db_url_file"})
        assert config.keys_dir == "/run/fedbroker/keys"
        assert "db_url_file" in BrokerConfig.model_fields, (
            "the chart names the database URL's file with broker.toml `db_url_file`; BrokerConfig needs that setting"
        )
        BrokerConfig.model_validate(data)
    else:
        config = MemberConfig.model_validate(data)
        assert config.member.host == "0.0.0.0"


def test_whole_numbers_stay_integers(helm: Any) -> None:
    """Helm reads values' numbers as floats; the configs still say `max_attempts = 3`, not 3.0."""
    docs = render(helm, "federation-broker", values_of("values-broker-production.yaml"))
    text = config_file(docs)[1]
    assert re.search(r"^\s*max_attempts = 3$", text, re.MULTILINE), text
    member = tomllib.loads(config_file(render(helm, "federation-member", values_of("values-member-production.yaml")))[1])
    assert member["member"]["datasets"][0]["size_bytes"] == 53687091200
    assert isinstance(member["backend"]["max_servers"], int) and isinstance(member["member"]["location"]["lat"], float)


# -- RBAC ----------------------------------------------------------------------------------
def test_no_cluster_scoped_rbac(release: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = release
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, name


def test_roles_have_no_wildcards(release: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = release
    for role in of_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{name}: wildcard {field} in {rule}"


def test_kubernetes_backend_gets_exactly_its_role(helm: Any) -> None:
    docs = render(helm, "federation-member", values_of("values-member-production.yaml"))
    (role,) = of_kind(docs, "Role")
    (binding,) = of_kind(docs, "RoleBinding")
    (account,) = of_kind(docs, "ServiceAccount")
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "fed-federation-member"]
    assert role["rules"] == MEMBER_ROLE_RULES
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "binder-launches"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize("values_file", ["values-member-binderhub.yaml"])
def test_binderhub_member_gets_no_api_access(helm: Any, values_file: str | None) -> None:
    docs = render(helm, "federation-member", values_of(values_file))
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# -- pods ----------------------------------------------------------------------------------
def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield pod, container


def test_pods_are_locked_down(release: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = release
    for pod, container in containers(docs):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert not sc["capabilities"].get("add"), name
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"], name


@pytest.mark.parametrize("values_file", [None, "values-broker-production.yaml"])
def test_broker_deployment(helm: Any, values_file: str | None) -> None:
    values = values_of(values_file)
    docs = render(helm, "federation-broker", values)
    (deployment,) = of_kind(docs, "Deployment")
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    (ingress,) = of_kind(docs, "Ingress")
    spec = deployment["spec"]
    assert spec["replicas"] == values.get("replicas", 2)
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    anti = pod["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [
        t["podAffinityTerm"] for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]
    ]
    assert terms[0]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    (container,) = pod["containers"]
    assert "/health" not in (container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    config = tomllib.loads(config_file(docs)[1])
    assert volumes[mounts[config["keys_dir"]]["name"]]["secret"]["secretName"]
    db_dir, db_file = config["db_url_file"].rsplit("/", 1)
    db_volume = volumes[mounts[db_dir]["name"]]["secret"]
    assert [item["path"] for item in db_volume["items"]] == [db_file]
    assert all(m.get("readOnly") for p, m in mounts.items() if p != "/tmp")


def test_broker_metrics_scraping(helm: Any) -> None:
    default = render(helm, "federation-broker", {})
    (deployment,) = of_kind(default, "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert not of_kind(default, "ServiceMonitor")
    production = render(helm, "federation-broker", values_of("values-broker-production.yaml"))
    (monitor,) = of_kind(production, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_member_datasets_are_read_only_listed_and_mounted_only_where_used(helm: Any) -> None:
    """The kubernetes backend's servers mount each claim read-only, only when the launch asks for its dataset; the agent never."""
    values = values_of("values-member-production.yaml")
    docs = render(helm, "federation-member", values)
    for pod, container in containers(docs):
        assert not [v for v in pod.get("volumes", []) if "persistentVolumeClaim" in v], "the agent and proxy do not read datasets"
    config = tomllib.loads(config_file(docs)[1])
    listed = config["member"]["datasets"]
    assert [(d["id"], d["mount_path"]) for d in listed] == [(d["id"], d["mountPath"]) for d in values["datasets"]]
    volumes = sorted(config["backend"]["dataset_volumes"].values(), key=lambda v: v["mount_path"])
    assert [(v["claim_name"], v["dataset_id"], v["prefix"]) for v in volumes] == sorted(
        [(d["claimName"], d["id"], d.get("prefix", False)) for d in values["datasets"]], key=lambda t: t[0])


def test_member_config_dir_is_assembled(helm: Any) -> None:
    """fedmember finds keys/ and broker.jwks.json beside member.toml: all three are mounted there."""
    docs = render(helm, "federation-member", {})
    ((pod, container),) = [(p, c) for p, c in containers(docs) if c["name"] == "agent"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/fedmember/member.toml", "/etc/fedmember/keys", "/etc/fedmember/broker.jwks.json"} <= mounts
    assert "--config" in container["args"]
    assert container["args"][container["args"].index("--config") + 1] == "/etc/fedmember/member.toml"


# -- secrets -------------------------------------------------------------------------------
SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"[a-z+]+://[^/\s:@]+:[^/\s@]+@"),  # a URL with a password
    re.compile(r"^\s*(db_url|password|token|api_token|secret)\s*=", re.MULTILINE),
]


def test_no_secret_values_in_configmaps(release: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = release
    assert not of_kind(docs, "Secret"), f"{name}: the charts never carry Secret values"
    for cm in of_kind(docs, "ConfigMap"):
        for key, text in cm["data"].items():
            for pattern in SECRET_PATTERNS:
                assert not pattern.search(text), f"{name}: {cm['metadata']['name']}/{key} matches {pattern.pattern}"


# -- dashboard ---------------------------------------------------------------------------
def test_dashboard_ships_with_the_broker(helm: Any) -> None:
    """The ConfigMap carries dashboards/broker.json as it is; its queries are checked in test_dashboard.py."""
    dashboards = [d for d in of_kind(render(helm, "federation-broker", {}), "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    (cm,) = dashboards
    shipped = json.loads(cm["data"]["broker.json"])
    assert shipped == json.loads((CHARTS / "federation-broker/dashboards/broker.json").read_text())
    assert len({p["id"] for p in shipped["panels"]}) == len(shipped["panels"])


# -- Dockerfiles ---------------------------------------------------------------------------
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    parsed = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]
    last_from = max(i for i, (op, _) in enumerate(parsed) if op == "FROM")
    return parsed[last_from:]


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.lstrip().startswith("[") else shlex.split(args)


@pytest.mark.parametrize(
    ("dockerfile", "command", "config", "port"),
    [("broker.Dockerfile", "fedbroker", "/etc/fedbroker/broker.toml", "8585"),
     ("member.Dockerfile", "fedmember", "/etc/fedmember/member.toml", "8586")],
)
def test_dockerfile(dockerfile: str, command: str, config: str, port: str) -> None:
    final = instructions(ROOT / "docker" / dockerfile)
    ops = {op: args for op, args in final}  # the last of each instruction wins, as in Docker
    assert final[0][1].startswith("python:") and "slim" in final[0][1]
    user = ops["USER"].split(":")[0]
    assert user not in ("root", "0"), "the image must run as a non-root user"
    assert user.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot check it"
    assert "CMD" in ops["HEALTHCHECK"] and "/health " not in ops["HEALTHCHECK"]
    assert ops["EXPOSE"].split() == [port]
    assert exec_form(ops["ENTRYPOINT"]) == [command]
    cmd = exec_form(ops["CMD"])
    assert cmd[0] == "serve" and cmd[cmd.index("--config") + 1] == config
