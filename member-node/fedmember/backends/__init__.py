"""Backends by ``kind``, loaded as entry points of ``binder_federation.backends`` (as JupyterHub loads spawners).

The project's own backends are entry points of this package too (pyproject.toml); a
separate package adds a backend by declaring one, without touching this project. Each is
imported only when configured (kubernetes is an extra). ``BUILTIN_BACKENDS`` repeats the
project's own entry points so a checkout whose install predates them still finds them; a
contract test keeps the two equal.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .base import Backend

ENTRY_POINT_GROUP = "binder_federation.backends"

BUILTIN_BACKENDS = {
    "local": "fedmember.backends.local:LocalBackend",
    "jupyterhub": "fedmember.backends.jupyterhub:JupyterHubBackend",
    "binderhub": "fedmember.backends.binderhub:BinderHubBackend",
    "kubernetes": "fedmember.backends.kubernetes:KubernetesBackend",
}
# The name other modules (the CLI, the chart schema generator) know the built-ins by.
BACKEND_MODULES = BUILTIN_BACKENDS


def backend_kinds() -> dict[str, str]:
    """Every installed backend kind and its ``module:Class`` target, built-ins first."""
    kinds = dict(BUILTIN_BACKENDS)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        kinds.setdefault(point.name, point.value)
    return kinds


def backend_class(kind: str) -> type[Backend]:
    """The backend class of ``kind``; a clear error when none is installed or it is not a :class:`Backend`."""
    kinds = backend_kinds()
    try:
        target = kinds[kind]
    except KeyError:
        raise ValueError(f"unknown backend kind {kind!r}; installed: {', '.join(kinds)}") from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"backend kind {kind!r} ({target}) cannot be loaded: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ValueError(f"backend kind {kind!r} ({target}) is not a fedmember.backends.base.Backend")
    return cls
