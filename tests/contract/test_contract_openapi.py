"""The OpenAPI files and the code agree: same routes, same version, and the files are valid OpenAPI 3.1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import validate

import fedproto
from fedbroker.app import make_app as make_broker_app
from fedbroker.config import BrokerConfig
from fedmember.app import make_app as make_member_app
from fedmember.config import MemberConfig
from fedproto.keys import KeyRing, PrivateKey

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "specs" / "openapi"
# Not API surface: static assets are files, not operations.
UNDOCUMENTED_PREFIXES = ("/static",)  # aiohttp names a static resource by its prefix, "/static"


def _spec(name: str) -> dict:
    return yaml.safe_load((OPENAPI / name).read_text())


def _code_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        # aiohttp adds HEAD beside every GET; the specs document the GET.
        if route.method in ("HEAD", "*") or path.startswith(UNDOCUMENTED_PREFIXES):
            continue
        routes.add((route.method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)))
    return routes


def _spec_routes(spec: dict) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete", "options"}
    return {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in methods}


def _broker_app(tmp_path: Path) -> web.Application:
    return make_broker_app(BrokerConfig(base_dir=tmp_path), keyring=KeyRing([PrivateKey.generate()]))


def _member_app(tmp_path: Path) -> web.Application:
    config = MemberConfig.model_validate(
        {"member": {"id": "site-a", "display_name": "A", "agent_url": "https://a.example.org",
                    "public_url": "https://a.example.org"},
         "backend": {"kind": "local"}, "config_dir": tmp_path}
    )
    return make_member_app(config, member_keys=KeyRing([PrivateKey.generate()]))


@pytest.mark.parametrize(("name", "factory"), [("broker-v1.yaml", _broker_app), ("member-v1.yaml", _member_app)])
def test_routes_in_code_equal_routes_in_spec(tmp_path: Path, name: str, factory) -> None:
    code, spec = _code_routes(factory(tmp_path)), _spec_routes(_spec(name))
    assert sorted(code - spec) == [], f"routes missing from {name}"
    assert sorted(spec - code) == [], f"routes in {name} that the code does not serve"


@pytest.mark.parametrize("name", ["broker-v1.yaml", "member-v1.yaml"])
def test_spec_version_is_the_package_version(name: str) -> None:
    assert _spec(name)["info"]["version"] == fedproto.__version__


@pytest.mark.parametrize("name", ["broker-v1.yaml", "member-v1.yaml"])
def test_spec_refs_resolve(name: str) -> None:
    """Every $ref points at a component or a generated schema file that exists."""
    text = (OPENAPI / name).read_text()
    spec = yaml.safe_load(text)
    for ref in re.findall(r'\$ref: "([^"]+)"', text):
        target, _, pointer = ref.partition("#")
        if target:
            assert (OPENAPI / target).is_file(), ref
        else:
            node = spec
            for part in pointer.strip("/").split("/"):
                node = node[part]
    assert spec["openapi"] == "3.1.0"


@pytest.mark.parametrize("name", ["broker-v1.yaml", "member-v1.yaml"])
def test_spec_is_valid_openapi(name: str) -> None:
    """openapi-spec-validator accepts the file (a YAML slip such as a flow mapping with a comma fails here)."""
    validate(_spec(name), base_uri=(OPENAPI / name).as_uri())
