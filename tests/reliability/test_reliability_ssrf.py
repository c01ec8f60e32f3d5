"""Server-side request forgery: a hostile client aims the federation at internal addresses.

Outside development mode, repository URLs (fetched by the member with a real git) and
agent URLs (given at enrollment or by an admin) that resolve to loopback, link-local,
private, multicast or unspecified addresses are refused before anything is contacted: a
loopback listener sees no connection, and the error for an open port reads exactly as
the error for a closed one.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from fedbroker.demo.agent import FEDMEMBER
from fedbroker.demo.childproc import ChildProcess, free_port, sweep_processes_under
from fedmember.backends.gitfetch import FetchError, GitFetcher
from fedmember.config import set_broker
from fedproto.clock import SystemClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.repospec import RepoSpec
from fedproto.tokens import sign_request
from fedproto.urlpolicy import AddressPolicy

from canary import Canary, free_port


def _git_spec(url: str) -> RepoSpec:
    return RepoSpec.parse("git", quote(url, safe="") + "/HEAD")


INTERNAL = [
    "http://127.0.0.1:{port}/repo.git",
    "http://localhost:{port}/repo.git",
    "http://0x7f000001:{port}/repo.git",
    "http://2130706433:{port}/repo.git",
    "http://[::ffff:127.0.0.1]:{port}/repo.git",
    "https://127.1:{port}/repo.git",
    "git://127.0.0.1:{port}/repo.git",
]


@pytest.mark.parametrize("template", INTERNAL)
async def test_git_fetch_refuses_internal_hosts_without_contacting_them(template: str, tmp_path: Path) -> None:
    with Canary() as canary:
        with pytest.raises(FetchError) as err:
            await GitFetcher(timeout=20).fetch(_git_spec(template.format(port=canary.port)), tmp_path / "out")
    assert canary.hits == 0
    assert "loopback" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[::1]:22/", "http://10.0.0.1/x.git",
     "http://192.168.1.1/x.git", "http://0.0.0.0:8080/x.git", "http://[fe80::1]/x.git", "http://224.0.0.1/x.git"],
)
async def test_git_fetch_refuses_metadata_and_private_addresses(url: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="does not fetch from"):
        await GitFetcher(timeout=20).fetch(_git_spec(url), tmp_path / "out")


async def test_open_and_closed_ports_read_the_same(tmp_path: Path) -> None:
    """Not a port scanner: a listening and a closed internal port give one and the same error."""
    with Canary() as canary:
        closed = free_port()
        errors = []
        for port in (canary.port, closed):
            with pytest.raises(FetchError) as err:
                await GitFetcher(timeout=20).fetch(_git_spec(f"http://127.0.0.1:{port}/r.git"), tmp_path / f"o{port}")
            errors.append(str(err.value).replace(str(port), "PORT"))
    assert errors[0] == errors[1]
    assert canary.hits == 0


async def test_operator_allow_list_opens_an_internal_git_server(tmp_path: Path) -> None:
    """An allow-listed network is fetched from (the listener is reached; it is no git server)."""
    with Canary() as canary:
        fetcher = GitFetcher(timeout=20, destinations=AddressPolicy.of(dev=False, allow=["127.0.0.0/8"]))
        with pytest.raises(FetchError, match="could not clone"):
            await fetcher.fetch(_git_spec(f"http://127.0.0.1:{canary.port}/repo.git"), tmp_path / "out")
    assert canary.hits >= 1


# -- a real member agent outside development mode ------------------------------------------------


def _member_agent(root: Path) -> tuple[ChildProcess, str, KeyRing]:
    """``fedmember init`` + ``serve`` (local backend, not dev mode), pinned to a test broker key."""
    directory = root / "member"
    subprocess.run([*FEDMEMBER, "init", str(directory), "--backend", "local", "--id", "siteq", "--agent-url",
                    "https://siteq.example.org", "--public-url", "https://siteq.example.org"],
                   check=True, capture_output=True, timeout=120)
    broker_keys = KeyRing([PrivateKey.generate()])
    (directory / "broker.jwks.json").write_text(json.dumps(broker_keys.public_set().to_jwks()))
    set_broker(directory / "member.toml", "https://broker.example.org", "attacked")
    port = free_port()
    child = ChildProcess("member", [*FEDMEMBER, "serve", "--config", str(directory / "member.toml"), "--port", str(port)],
                         root / "member.log")
    child.start()
    child.wait_for_line("fedmember listening on", timeout=120)
    return child, f"http://127.0.0.1:{port}", broker_keys


def _launch_events(agent_url: str, keys: KeyRing, spec: RepoSpec, launch_id: str) -> list[dict]:
    body = json.dumps({"provider": spec.provider, "spec": spec.spec, "launch_id": launch_id}).encode()
    token = sign_request(keys.signing_key, issuer="attacked", audience="siteq", method="POST",
                         path_qs="/api/v1/launches", body=body, clock=SystemClock())
    request = urllib.request.Request(agent_url + "/api/v1/launches", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        text = resp.read().decode()
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def test_a_real_member_refuses_internal_repositories(tmp_path: Path) -> None:
    """Signed launches (as the broker sends them) for git URLs on loopback, the metadata address
    and private networks: each fails with the SSRF refusal, and the listener sees nothing."""
    child, agent_url, keys = _member_agent(tmp_path)
    try:
        with Canary() as canary:
            targets = [f"http://127.0.0.1:{canary.port}/r.git", f"http://0x7f000001:{canary.port}/r.git",
                       f"http://[::1]:{canary.port}/r.git", "http://169.254.169.254/latest/meta-data/",
                       "http://10.0.0.1/r.git"]
            for i, url in enumerate(targets):
                events = _launch_events(agent_url, keys, _git_spec(url), f"ssrf-launch-{i:04d}")
                assert events[-1]["phase"] == "failed", events
                assert "does not fetch from" in events[-1]["message"]
        assert canary.hits == 0
        assert not list((tmp_path / "member" / "state").rglob("r.git"))
    finally:
        child.stop()
    assert sweep_processes_under(tmp_path) == []
