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


# --- The broker's wings (registry, routing, launch, web, demo, cli) and its composition root ---

BROKER = PACKAGES["fedbroker"]
# Services are built by the composition root (fedbroker.app) and handed what they need; they
# never reach for application state or for the layers above them.
SERVICE_WINGS = ("registry", "routing", "launch")
ABOVE_SERVICES = {"fedbroker.app", "fedbroker.appkeys", "fedbroker.web", "fedbroker.cli", "fedbroker.demo",
                  "fedbroker.serve"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(BROKER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _broker_imports(path: Path) -> set[str]:
    """Absolute names of the fedbroker modules ``path`` imports (relative imports resolved)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("fedbroker"):
                continue
            for alias in node.names:  # "from .web import routes" imports the module fedbroker.web.routes
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _exists(candidate) else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fedbroker"))
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (BROKER / rel).with_suffix(".py").exists() or (BROKER / rel / "__init__.py").exists()


def _broker_graph() -> dict[str, set[str]]:
    return {_module_name(p): _broker_imports(p) for p in BROKER.rglob("*.py")}


def test_broker_services_do_not_import_the_wiring_or_the_web() -> None:
    offenders = {
        module: sorted(i for i in imports if any(i == a or i.startswith(a + ".") for a in ABOVE_SERVICES))
        for module, imports in _broker_graph().items()
        if module.split(".")[1:2] and module.split(".")[1] in SERVICE_WINGS
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_broker_modules_import_no_circle() -> None:
    graph = _broker_graph()
    graph = {m: {i for i in imports if i in graph and i != m} for m, imports in graph.items()}
    # Package __init__ modules only re-export; an import of "fedbroker.x" is not an edge back.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_broker_tree_is_its_wings() -> None:
    """No loose modules join the top of the broker package without a reason written here."""
    top = sorted(p.stem for p in BROKER.glob("*.py"))
    assert top == ["__init__", "__main__", "adminclient", "app", "appkeys", "config", "errors", "initdir",
                   "jsonbody", "metrics", "serve"]
    wings = sorted(p.name for p in BROKER.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert wings == ["cli", "demo", "launch", "registry", "routing", "web"]



def test_broker_services_raise_domain_errors_not_http() -> None:
    """The services raise fedproto's error kinds (fedproto.errors); only the web's error
    middleware (fedbroker.errors) knows how HTTP answers them."""
    offenders = sorted(
        module for module, imports in _broker_graph().items()
        if module.split(".")[1:2] and module.split(".")[1] in SERVICE_WINGS and "fedbroker.errors" in imports
    )
    assert offenders == [], "import the error kinds from fedproto.errors"
