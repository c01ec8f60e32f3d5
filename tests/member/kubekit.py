"""Helpers of the kubernetes backend tests: the FAKE API server, a real configurable-http-proxy, backends and agents.

The API server is fake (tests/member/fake_kubernetes.py: no cluster runs here); the proxy and,
with ``kubelet="process"``, the notebook servers are real processes on 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest

from fedmember.backends.kubernetes import KubernetesBackend, KubernetesConfig
from fedmember.backends.kubernetes_pods import labels, object_name, pod_manifest, PodSpec, secret_manifest
from fedproto.launch import LaunchRequest

from backend_fixtures import configurable_http_proxy, free_port, make_context
from fake_kubernetes import FakeKubernetes, running, write_kubeconfig

NS = "fed-test"
MEMBER = "test-member"


@dataclass
class Kube:
    fake: FakeKubernetes
    kubeconfig: Path
    url: str


async def start_fake(aiohttp_server: Any, tmp_path: Path, **kwargs: Any) -> Kube:
    fake = FakeKubernetes(workdir=tmp_path / "pods", **kwargs)
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    url = str(server.make_url("")).rstrip("/")
    return Kube(fake, write_kubeconfig(tmp_path / "kubeconfig", url), url)


@pytest.fixture
async def kube(aiohttp_server: Any, tmp_path: Path) -> Kube:
    """The fake API server with an instant kubelet (pods Ready after 0.1 s, nothing runs)."""
    return await start_fake(aiohttp_server, tmp_path, ready_delay=0.1)


@dataclass
class Proxy:
    public_url: str
    api_url: str
    token_file: Path

    async def routes(self) -> dict[str, Any]:
        token = self.token_file.read_text().strip()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.api_url}/api/routes", headers={"Authorization": f"token {token}"}) as resp:
                return await resp.json()


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    """A real configurable-http-proxy on free 127.0.0.1 ports, with an API token in a file."""
    chp = configurable_http_proxy()
    token = secrets.token_hex(16)
    token_file = tmp_path / "proxy-token"
    token_file.write_text(token + "\n")
    port, api_port = free_port(), free_port()
    proc = subprocess.Popen([chp, "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port)],
                            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = Proxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}", token_file)
    try:
        for _ in range(100):
            try:
                await found.routes()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("configurable-http-proxy did not answer")
        yield found
    finally:
        proc.terminate()
        proc.wait(10)


def settings(kubeconfig: Path, **config: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"kind": "kubernetes", "namespace": NS, "kubeconfig": str(kubeconfig), "start_timeout": 5, "request_timeout": 3,
                              "default_image": "quay.io/jupyter/base-notebook:2026", "dataset_volumes": {
                                  "climate": {"mount_path": "/data/climate", "claim_name": "climate-pvc", "dataset_id": "10.5281/zenodo.1"}}}
    values.update(config)
    return values


def make_backend(tmp_path: Path, kube: Kube, *, public_url: str = "https://nb.example.org/", clock: Any = None, **config: Any) -> KubernetesBackend:
    context = make_context(tmp_path, public_url=public_url, member_id=MEMBER, **({"clock": clock} if clock else {}))
    return KubernetesBackend(KubernetesConfig(**settings(kube.kubeconfig, **config)), context)


def with_proxy(proxy: Proxy) -> dict[str, Any]:
    return {"proxy_api_url": proxy.api_url, "proxy_token": {"token_file": str(proxy.token_file)}}


def request(launch_id: str, **extra: Any) -> LaunchRequest:
    return LaunchRequest(provider="gh", spec="org/repo/HEAD", launch_id=launch_id, **extra)


def seed_pod(fake: FakeKubernetes, launch_id: str, *, status: dict[str, Any] | None, secret: bool = True, member: str = MEMBER) -> str:
    """A pod (and its Secret) as an agent of ``member`` would have created it; ``status`` None keeps it Pending."""
    name = object_name(launch_id)
    tags = labels(member, launch_id, "0" * 16, {})
    pod = pod_manifest(name=name, labels=tags, launch_id=launch_id, image="x", base_url=f"/{name}/", origins=[], volumes={}, spec=PodSpec())
    pod["status"] = status or {"phase": "Pending"}
    fake.put("pods", NS, pod)
    if secret:
        fake.put("secrets", NS, {**secret_manifest(name=name, labels=tags, launch_id=launch_id, token="t0k"), "data": {"token": "dDBr"}})
    return name


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait for the informer-driven state to catch up (watch events arrive asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


__all__ = ["Kube", "NS", "Proxy", "kube", "make_backend", "proxy", "request", "running", "seed_pod", "start_fake", "until", "with_proxy"]
