"""Backends by ``kind``; each is imported only when configured (kubernetes is an extra)."""

from __future__ import annotations

import importlib

from .base import Backend

BACKEND_MODULES = {
    "local": "fedmember.backends.local:LocalBackend",
    "jupyterhub": "fedmember.backends.jupyterhub:JupyterHubBackend",
    "binderhub": "fedmember.backends.binderhub:BinderHubBackend",
    "kubernetes": "fedmember.backends.kubernetes:KubernetesBackend",
}


def backend_class(kind: str) -> type[Backend]:
    try:
        target = BACKEND_MODULES[kind]
    except KeyError:
        raise ValueError(f"unknown backend kind {kind!r}; choose one of {', '.join(BACKEND_MODULES)}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
