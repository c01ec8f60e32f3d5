"""The layout rules of DESIGN.md: dependency direction, no aiohttp in fedproto, schemas in sync."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fedproto.schemas import render_all

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"fedproto": ROOT / "specs" / "fedproto", "fedbroker": ROOT / "broker" / "fedbroker",
            "fedmember": ROOT / "member-node" / "fedmember"}
FORBIDDEN = {
    "fedproto": {"aiohttp", "fedbroker", "fedmember", "sqlalchemy"},
    "fedbroker": {"fedmember"},
    "fedmember": {"fedbroker"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN[package])
        for p in PACKAGES[package].rglob("*.py")
        if _imports(p) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_source_roots_hold_one_package_and_no_loose_modules() -> None:
    for root in ("specs", "broker", "member-node"):
        assert list((ROOT / root).glob("*.py")) == [], f"loose .py files in {root}/"


def test_every_module_says_what_it_owns() -> None:
    missing = [str(p.relative_to(ROOT)) for pkg in PACKAGES.values() for p in pkg.rglob("*.py")
               if p.stat().st_size and not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def test_schemas_match_the_models() -> None:
    """Run `make schemas` after changing a wire model."""
    on_disk = {p.name: p.read_text() for p in (ROOT / "specs" / "schemas").glob("*.json")}
    assert on_disk == render_all()
