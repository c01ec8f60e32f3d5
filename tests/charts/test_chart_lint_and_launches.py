"""The charts lint clean with every example values file (Helm's own linter, through helm-python-sdk's Go SDK),
NOTES.txt links resolve, and the member chart's kubernetes pieces fit together: launch namespace, NetworkPolicy,
proxy, extension points."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedmember.backends.kubernetes_config import KubernetesConfig
from fedmember.backends.kubernetes_pods import labels as pod_labels

from test_charts import CHARTS, HERE, KUBE_VERSION, NAMESPACE, ROOT, config_file, helm, kubernetes_validate, of_kind, render, values_of  # noqa: F401

METADATA = ipaddress.ip_network("169.254.169.254/32")
EXAMPLES = sorted(p.name for p in HERE.glob("values-*.yaml"))


def readme_values() -> dict[str, dict[str, Any]]:
    """The chart values files the README shows (```yaml blocks starting '# <name>-values.yaml')."""
    blocks = re.findall(r"```yaml\n(# ([\w-]+-values\.yaml)\n.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return {name: yaml.safe_load(text) for text, name in blocks}


def lint_problems(helm: Any, chart: str, values: dict[str, Any]) -> list[Any]:
    report = helm.lint(CHARTS / chart, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    return [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("values_file", EXAMPLES)
def test_every_example_values_file_lints(helm: Any, values_file: str) -> None:
    chart = "federation-broker" if "broker" in values_file else "federation-member"
    assert not lint_problems(helm, chart, values_of(values_file)), values_file


def test_readme_examples_render_and_lint(helm: Any) -> None:
    examples = readme_values()
    assert set(examples) == {"broker-values.yaml", "uni-x-values.yaml"}, sorted(examples)
    for name, values in examples.items():
        chart = "federation-broker" if name.startswith("broker") else "federation-member"
        assert not lint_problems(helm, chart, values), name
        assert render(helm, chart, values)


def test_lint_catches_a_broken_chart(helm: Any, tmp_path: Path) -> None:
    """The lint check is not a rubber stamp: a template with a bad object name fails it."""
    import shutil

    broken = tmp_path / "federation-member"
    shutil.copytree(CHARTS / "federation-member", broken)
    (broken / "templates" / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Name\n")
    report = helm.lint(broken, {}, strict=True, namespace=NAMESPACE)
    assert [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]


def test_notes_links_exist() -> None:
    for notes in CHARTS.glob("*/templates/NOTES.txt"):
        links = re.findall(r"([\w./-]+\.md)(#[\w-]+)?", notes.read_text())
        assert links, f"{notes} points nowhere"
        for path, anchor in links:
            target = ROOT / path
            assert target.exists(), f"{notes}: {path} does not exist"
            if anchor:
                slugs = {re.sub(r"[^\w -]", "", h.strip().lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.*)$", target.read_text(), re.MULTILINE)}
                assert anchor[1:] in slugs, f"{notes}: {path}{anchor} names no heading"


# -- the kubernetes member ---------------------------------------------------------------
@pytest.fixture(scope="module")
def production(helm: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    values = values_of("values-member-production.yaml")
    return values, render(helm, "federation-member", values)


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (doc,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return doc


def test_launch_namespace_is_apart_and_restricted(helm: Any) -> None:
    docs = render(helm, "federation-member", {})
    (namespace,) = of_kind(docs, "Namespace")
    (role,) = of_kind(docs, "Role")
    config = tomllib.loads(config_file(docs)[1])
    assert namespace["metadata"]["name"] == role["metadata"]["namespace"] == config["backend"]["namespace"] == f"{NAMESPACE}-launches"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    same = render(helm, "federation-member", {"config": {"backend": {"kind": "kubernetes", "namespace": NAMESPACE}}})
    assert not of_kind(same, "Namespace"), "never create the release's own namespace"


def test_network_policy_selects_launched_pods_and_admits_only_proxy_and_agent(production: Any) -> None:
    values, docs = production
    policy = named(docs, "NetworkPolicy", "-launches")
    config = tomllib.loads(config_file(docs)[1])
    launched = pod_labels(values["config"]["member"]["id"], "launch-1", "0" * 16, {})
    assert policy["metadata"]["namespace"] == config["backend"]["namespace"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= launched.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": KubernetesConfig().server_port, "protocol": "TCP"}]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in of_kind(docs, "Deployment")}
    admitted = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert all(peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE} for peer in rule["from"])
    assert sorted(name for name, pod in pods.items() if any(sel.items() <= pod.items() for sel in admitted)) == sorted(pods)


@pytest.mark.parametrize("egress", [{}, {"privateIPs": True}, {"internet": False, "dns": False}, {"privateIPs": True, "internet": True}])
def test_metadata_endpoint_is_always_blocked(helm: Any, egress: dict[str, Any]) -> None:
    docs = render(helm, "federation-member", {"launches": {"networkPolicy": {"egress": egress}}})
    policy = named(docs, "NetworkPolicy", "-launches")
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), f"an egress rule open to every address: {rule}"
        for peer in rule["to"]:
            block = peer["ipBlock"]
            if METADATA.subnet_of(ipaddress.ip_network(block["cidr"])):
                assert any(METADATA.subnet_of(ipaddress.ip_network(e)) for e in block.get("except", [])), block


def test_extra_egress_may_not_name_address_blocks(helm: Any) -> None:
    rule = {"to": [{"ipBlock": {"cidr": "169.254.0.0/16"}}]}
    with pytest.raises(helm.HelmError, match="may not use ipBlock"):
        render(helm, "federation-member", {"launches": {"networkPolicy": {"egress": {"extraRules": [rule]}}}})
    ok = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}], "ports": [{"port": 2049}]}
    docs = render(helm, "federation-member", {"launches": {"networkPolicy": {"egress": {"extraRules": [ok]}}}})
    assert named(docs, "NetworkPolicy", "-launches")["spec"]["egress"][-1] == ok


def test_proxy_api_reaches_only_the_agent_and_shares_its_token(production: Any) -> None:
    values, docs = production
    config = tomllib.loads(config_file(docs)[1])["backend"]
    proxy = named(docs, "Deployment", "-proxy")
    agent = named(docs, "Deployment", "-member")
    api = named(docs, "Service", "-proxy-api")
    assert config["proxy_api_url"] == f"http://{api['metadata']['name']}:{api['spec']['ports'][0]['port']}"
    assert api["spec"]["selector"].items() <= proxy["spec"]["template"]["metadata"]["labels"].items()
    assert not api["spec"]["selector"].items() <= agent["spec"]["template"]["metadata"]["labels"].items()
    (chp,) = proxy["spec"]["template"]["spec"]["containers"]
    token_ref = chp["env"][0]["valueFrom"]["secretKeyRef"]
    volumes = {v["name"]: v for v in agent["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in agent["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    token_dir, token_name = config["proxy_token"]["token_file"].rsplit("/", 1)
    secret = volumes[mounts[token_dir]]["secret"]
    assert secret["secretName"] == token_ref["name"] and secret["items"] == [{"key": token_ref["key"], "path": token_name}]
    policy = named(docs, "NetworkPolicy", "-proxy")
    api_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "api")
    assert [p["podSelector"]["matchLabels"] for p in api_rule["from"]] == [agent["spec"]["selector"]["matchLabels"]]
    public = named(docs, "Ingress", "-proxy")
    assert public["spec"]["rules"][0]["host"] == values["config"]["member"]["public_url"].split("://")[1]


@pytest.mark.parametrize("chart", ["federation-broker", "federation-member"])
def test_extension_points(helm: Any, chart: str) -> None:
    """extraEnv, extraVolumes, extraVolumeMounts, extraContainers, tolerations, priorityClassName, imagePullSecrets, affinity."""
    values = {
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://squid:3128"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "site-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/site", "readOnly": True}],
        "extraContainers": [{"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "inf"]}],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "core", "effect": "NoSchedule"}],
        "priorityClassName": "federation-critical",
        "imagePullSecrets": [{"name": "registry"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["core"]}]}]}}},
    }
    docs = render(helm, chart, values)
    main = next(d for d in of_kind(docs, "Deployment") if not d["metadata"]["name"].endswith("-proxy"))
    pod = main["spec"]["template"]["spec"]
    first = pod["containers"][0]
    assert values["extraEnv"][0] in first["env"] and values["extraVolumeMounts"][0] in first["volumeMounts"]
    assert values["extraVolumes"][0] in pod["volumes"] and pod["containers"][-1]["name"] == "sidecar"
    assert pod["tolerations"] == values["tolerations"] and pod["priorityClassName"] == "federation-critical"
    assert pod["imagePullSecrets"] == values["imagePullSecrets"] and pod["affinity"]["nodeAffinity"]


# -- rollouts and the front door ------------------------------------------------------------
@pytest.mark.parametrize("values_file", [None, *EXAMPLES])
def test_rollouts_cannot_hang(helm: Any, values_file: str | None) -> None:
    """Every Deployment reports a stuck rollout; hard anti-affinity never surges (a pool sized to the replicas has no spare node)."""
    charts = ["federation-broker", "federation-member"] if values_file is None else \
        ["federation-broker" if "broker" in values_file else "federation-member"]
    for chart in charts:
        values = values_of(values_file)
        for deployment in of_kind(render(helm, chart, values), "Deployment"):
            spec = deployment["spec"]
            assert spec["progressDeadlineSeconds"] <= 600, deployment["metadata"]["name"]
            strategy = spec["strategy"]
            if strategy["type"] == "Recreate":
                assert spec["replicas"] == 1
                continue
            anti = spec["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
            if anti.get("requiredDuringSchedulingIgnoredDuringExecution"):
                assert strategy["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}, deployment["metadata"]["name"]
            else:
                assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_production_broker_keys_the_rate_limit_on_the_client_address(helm: Any) -> None:
    """Behind an ingress controller every request comes from it: the limit needs the client-address header it sets."""
    values = values_of("values-broker-production.yaml")
    config = tomllib.loads(config_file(render(helm, "federation-broker", values))[1])
    assert values["ingress"]["enabled"] and config["rate_limit"]["launches"] > 0
    assert config["rate_limit"]["client_ip_header"] == "X-Real-IP"


# -- registry migrations ----------------------------------------------------------------------
def test_migration_job_is_opt_in_and_runs_before_the_upgrade(helm: Any, kubernetes_validate: Any) -> None:
    assert not of_kind(render(helm, "federation-broker", {}), "Job")
    values = {**values_of("values-broker-production.yaml"), "migrations": {"job": {"enabled": True}}}
    docs = render(helm, "federation-broker", values)
    (job,) = of_kind(docs, "Job")
    hook_config = named(docs, "ConfigMap", "-migrate")
    (deployment,) = of_kind(docs, "Deployment")
    for hooked in (job, hook_config):
        assert hooked["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert int(hook_config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:1] == ["migrate"] and job["spec"]["activeDeadlineSeconds"] == 600
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    main_config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == deployment["metadata"]["name"])
    assert hook_config["data"] == main_config["data"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = tomllib.loads(hook_config["data"]["broker.toml"])
    db_dir = config["db_url_file"].rsplit("/", 1)[0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == db_dir)
    assert "secret" in volumes[mount["name"]] and not any(m["name"] == "keys" for m in container["volumeMounts"])
    assert not lint_problems(helm, "federation-broker", values)
    for doc in (job, hook_config):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# -- images ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", ["broker.Dockerfile", "member.Dockerfile"])
def test_images_are_pinned(dockerfile: str) -> None:
    """Every base image by digest; dependencies at the locked versions."""
    text = (ROOT / "docker" / dockerfile).read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms and all(re.search(r"@sha256:[0-9a-f]{64}$", image) for image in froms), froms
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs and all("--constraint docker/requirements.lock" in line for line in installs), installs


def test_lock_pins_every_runtime_dependency_within_pyproject() -> None:
    import importlib.util

    from packaging.version import Version

    spec = importlib.util.spec_from_file_location("docker_lock", ROOT / "docker" / "lock.py")
    assert spec and spec.loader
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    pinned = dict(line.split("==") for line in (ROOT / "docker/requirements.lock").read_text().splitlines() if "==" in line)
    for requirement in lock.runtime_requirements():
        name = lock.canonical(requirement.name)
        assert name in pinned, f"{name} is not in docker/requirements.lock: run docker/lock.py"
        assert Version(pinned[name]) in requirement.specifier, f"{name}=={pinned[name]} does not satisfy {requirement}"
