"""The production path end to end, on loopback with TLS and nothing in development mode.

A private CA (generated here) signs every certificate; the broker serves https itself; three
JupyterHub members' agents serve https, beside one real JupyterHub whose proxy is https too;
repositories are served over https. Every client trusts the CA through ``ca_bundle`` (or
``--ca-bundle`` for the admin CLI). The tests run in order on one federation:

1. enrollment with approval (``fedmember enroll`` leaves the member pending until approved);
2. a member whose certificate the broker cannot verify is reported with the real reason;
3. a dataset launch goes to the member that stores the data;
4. a JupyterHub member refuses a repository it has no image for, and the launch fails over;
   a repository that does not exist never ends ready;
5. broker key rotation with launches before, during and after, then retirement;
6. member key rotation, live, with launches before and after, then retirement;
7. a ``local`` member whose agent serves https fronts its sandboxed servers on its own origin.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator
from urllib.parse import quote, urlencode

import aiohttp
import pytest

from tlskit import CA, HttpsGitServer, bare_repo, cli, edit_toml, free_port, must, serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "member"))
from backend_fixtures import run_jupyterhub  # noqa: E402  (tests/member: the real-hub helper)

pytestmark = pytest.mark.slow

DATASET = "10.5281/zenodo.424242"
HEALTH = {"interval": 0.5, "timeout": 2.0, "unhealthy_interval": 0.5, "jitter": 0.1}
LAUNCH_TIMEOUT = 120.0


def _member(fed: SimpleNamespace, tmp: Path, ca: CA, member_id: str, backend: dict[str, Any],
            datasets: list[dict[str, Any]] | None = None, cert_from: CA | None = None) -> SimpleNamespace:
    """``fedmember init``, the production settings, then enrollment (pending) and approval."""
    directory, port = tmp / member_id, free_port()
    agent_url = f"https://127.0.0.1:{port}"
    must("fedmember", "init", str(directory), "--backend", "jupyterhub", "--id", member_id,
         "--agent-url", agent_url, "--public-url", fed.hub["public_url"])
    cert, key = (cert_from or ca).issue(f"agent-{member_id}")
    edit_toml(directory / "member.toml", {
        "member": {"port": port, "tls_cert_file": str(cert), "tls_key_file": str(key), "ca_bundle": str(ca.bundle),
                   "fetch_allow": ["127.0.0.1/32"], "datasets": datasets or [], "status_ttl": 30.0},
        "broker": {"keys_refresh": 3.0},
        "backend": {"kind": "jupyterhub", "hub_api_url": fed.hub["api_url"], "public_hub_url": fed.hub["public_url"],
                    "token": {"token_file": str(fed.hub["token_file"])}, "user_prefix": f"{member_id}-",
                    "providers": ["git"], "start_timeout": 90.0, **backend},
    })
    token = must("fedbroker", "enroll-token", "create", "--name", member_id, env=fed.admin_env).strip().splitlines()[-1]
    enrolled = must("fedmember", "enroll", fed.broker.url, "--token", token, "--config", str(directory / "member.toml"))
    approved = must("fedbroker", "members", "approve", member_id, env=fed.admin_env)
    agent = serve([str(Path(sys.executable).parent / "fedmember"), "serve", "--config", str(directory / "member.toml")],
                  tmp / f"{member_id}.log", "fedmember listening on")
    return SimpleNamespace(id=member_id, dir=directory, agent=agent, enrolled=enrolled, approved=approved)


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    tmp = tmp_path_factory.mktemp("prod")
    ca, rogue = CA(tmp / "pki", "federation"), CA(tmp / "rogue", "rogue")
    fed = SimpleNamespace(ca=ca, members={})
    with ExitStack() as stack:
        (tmp / "repos").mkdir()
        git = HttpsGitServer(tmp / "repos", ca.issue("git"))
        stack.callback(git.stop)
        fed.repos = {name: git.url + bare_repo(tmp / "repos", name, {"README.md": f"# {name}\n"})
                     for name in ("served", "other")}
        fed.missing = git.url + "/nope.git"
        hub_cert, hub_key = ca.issue("hub")
        (tmp / "hub").mkdir()
        fed.hub = stack.enter_context(run_jupyterhub(tmp / "hub", tls=(str(hub_cert), str(hub_key), str(ca.bundle))))

        out = must("fedbroker", "init", str(tmp / "broker"), "--broker-id", "prod")
        admin = out.strip().splitlines()[-1].removeprefix("admin token: ")
        cert, key = ca.issue("broker")
        fed.broker_config = tmp / "broker" / "broker.toml"
        edit_toml(fed.broker_config, {"tls_cert_file": str(cert), "tls_key_file": str(key), "ca_bundle": str(ca.bundle),
                                      "agent_url_allow": ["127.0.0.1/32"], "health": HEALTH})
        fed.broker = serve([str(Path(sys.executable).parent / "fedbroker"), "serve", "--config", str(fed.broker_config),
                            "--port", "0"], tmp / "broker.log", "fedbroker listening on")
        stack.callback(fed.broker.stop)
        assert fed.broker.url.startswith("https://")
        fed.admin_env = {"FEDBROKER_URL": fed.broker.url, "FEDBROKER_TOKEN": admin, "FEDERATION_CA_BUNDLE": str(ca.bundle)}

        served_rule = [{"match": "/served\\.git$", "user_options": {}}]
        for member_id, backend, datasets, issuer in (
            ("site-data", {"rules": served_rule}, [{"id": DATASET, "size_bytes": 5 * 1024**3}], ca),
            ("site-any", {"unmatched": "default"}, [], ca),
            ("site-rogue", {"unmatched": "default"}, [], rogue),
        ):
            member = _member(fed, tmp, ca, member_id, backend, datasets, issuer)
            stack.callback(member.agent.stop)
            fed.members[member_id] = member
        # The data member wins ties; the other is there to fail over to.
        _admin_patch(fed, "site-any", {"weight": 0.3})
        yield fed


def _admin_patch(fed: SimpleNamespace, member_id: str, body: dict[str, Any]) -> None:
    import urllib.request

    request = urllib.request.Request(f"{fed.broker.url}/api/v1/members/{member_id}", method="PATCH",
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {fed.admin_env['FEDBROKER_TOKEN']}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=fed.ca.client_context(), timeout=30) as resp:
        assert resp.status == 200


def _show(fed: SimpleNamespace, member_id: str) -> dict[str, Any]:
    return json.loads(must("fedbroker", "members", "show", member_id, "--json", env=fed.admin_env))


def _wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout:g} s (last: {last!r})")


async def _launch(fed: SimpleNamespace, repo_url: str, data: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every event of one ``/build`` launch through the broker, over https trusting the private CA.

    Read to the stream's end, as the broker ends it after the terminal event like BinderHub does:
    leaving a TLS stream half-read closes it gracefully, and a test whose loop closes before the
    broker's close_notify arrives leaks the socket (a ResourceWarning in a later test).
    """
    query = f"?{urlencode([('data', d) for d in data])}" if data else ""
    url = f"{fed.broker.url}/build/git/{quote(repo_url, safe='')}/main{query}"
    events: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(ssl=fed.ca.client_context())
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=LAUNCH_TIMEOUT)) as http:
        async with http.get(url, headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 200, await resp.text()
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
    terminal = [i for i, e in enumerate(events) if e["phase"] in ("ready", "failed")]
    assert terminal == [len(events) - 1], events  # one terminal event, and the stream ended with it
    return events


async def _ready(fed: SimpleNamespace, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The ready event, once its server answered over https with its token (and refused without)."""
    ready = events[-1]
    assert ready["phase"] == "ready", events
    assert ready["url"].startswith(fed.hub["public_url"] + "/user/")
    connector = aiohttp.TCPConnector(ssl=fed.ca.client_context())
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{ready['url']}api/status", headers={"Authorization": f"token {ready['token']}"}) as resp:
            body = await resp.text()  # read whole, so the connection goes back to the pool (see _launch)
            assert resp.status == 200, body
    return ready


def test_enrollment_waits_for_approval(prod: SimpleNamespace) -> None:
    for member in prod.members.values():
        assert "state pending" in member.enrolled and "is now active" in member.approved
        assert (member.dir / "broker.jwks.json").exists()
    listing = json.loads(must("fedbroker", "members", "list", "--json", env=prod.admin_env))
    assert {m["id"]: m["state"] for m in listing["members"]} == dict.fromkeys(prod.members, "active")


def test_member_the_broker_cannot_verify_is_reported_with_the_real_reason(prod: SimpleNamespace) -> None:
    shown = _wait("the rogue member's TLS failure", lambda: (
        s if "certificate verify failed" in str((s := _show(prod, "site-rogue"))["health"].get("last_error")) else None))
    assert shown["health"]["routable"] is False and "certificate verify failed" in shown["health"]["reason"]
    text = must("fedbroker", "members", "show", "site-rogue", env=prod.admin_env)
    assert "last failure: cannot reach agent: certificate verify failed" in text
    import urllib.request

    with urllib.request.urlopen(f"{prod.broker.url}/api/v1/federation", context=prod.ca.client_context()) as resp:
        summary = json.loads(resp.read())
    rogue = next(m for m in summary["members"] if m["id"] == "site-rogue")
    assert "certificate verify failed" in rogue["reason"]
    # Quarantine it: a member that never answers would hold broker key rotation back (by design).
    must("fedbroker", "members", "disable", "site-rogue", env=prod.admin_env)
    _wait("both good members healthy", lambda: all(_show(prod, m)["health"]["routable"] for m in ("site-data", "site-any")))


async def test_dataset_launch_goes_to_the_member_that_stores_the_data(prod: SimpleNamespace) -> None:
    ready = await _ready(prod, await _launch(prod, prod.repos["served"], data=(DATASET,)))
    assert ready["member"] == "site-data"


async def test_jupyterhub_member_refuses_what_it_cannot_serve_and_the_launch_fails_over(prod: SimpleNamespace) -> None:
    events = await _launch(prod, prod.repos["other"], data=(DATASET,))
    ready = await _ready(prod, events)
    assert ready["member"] == "site-any"
    refused = [e for e in events if e["phase"] == "waiting" and e.get("member") == "site-data"]
    assert refused and "serves no image" in refused[0]["message"], events

    missing = await _launch(prod, prod.missing)
    assert missing[-1]["phase"] == "failed" and missing[-1]["status_code"] == 404, missing
    assert not any(e["phase"] == "ready" for e in missing)


async def _cli_async(*args: str, env: dict[str, str]) -> str:
    import os

    proc = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / args[0]), *args[1:],
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, **env})
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()


def _key_status(prod: SimpleNamespace) -> dict[str, Any]:
    return json.loads(must("fedbroker", "keys", "status", "--json", env=prod.admin_env))


async def test_broker_key_rotation_without_an_outage(prod: SimpleNamespace) -> None:
    before = _key_status(prod)
    old = before["signing"]
    await _ready(prod, await _launch(prod, prod.repos["served"]))  # before

    during = asyncio.create_task(_launch(prod, prod.repos["served"]))
    out = await _cli_async("fedbroker", "keys", "rotate", "--config", str(prod.broker_config), env=prod.admin_env)
    new = out.split()[3].rstrip(":")
    await _ready(prod, await during)  # during

    status = await asyncio.to_thread(_wait, "members to pin the new broker key", lambda: (
        s if (s := _key_status(prod))["signing"] == new else None))
    assert [k["kid"] for k in status["keys"]] == [new, old]
    for member in ("site-data", "site-any"):
        pinned = json.loads((prod.members[member].dir / "broker.jwks.json").read_text())
        assert {k["kid"] for k in pinned["keys"]} == {new, old}
    await _ready(prod, await _launch(prod, prod.repos["served"]))  # after: signed with the new key

    must("fedbroker", "keys", "retire", "--config", str(prod.broker_config), env=prod.admin_env)
    await asyncio.to_thread(_wait, "members to drop the retired key", lambda: all(
        [k["kid"] for k in json.loads((prod.members[m].dir / "broker.jwks.json").read_text())["keys"]] == [new]
        for m in ("site-data", "site-any")))
    await _ready(prod, await _launch(prod, prod.repos["served"]))  # after retirement
    assert all(_show(prod, m)["health"]["state"] == "healthy" for m in ("site-data", "site-any"))


async def test_member_key_rotation_live_without_a_restart(prod: SimpleNamespace) -> None:
    member = prod.members["site-data"]
    pid = member.agent.proc.pid
    await _ready(prod, await _launch(prod, prod.repos["served"], data=(DATASET,)))
    must("fedmember", "keys", "rotate", "--config", str(member.dir / "member.toml"))
    assert len(_show(prod, "site-data")["jwks"]["keys"]) == 2
    await _ready(prod, await _launch(prod, prod.repos["served"], data=(DATASET,)))
    must("fedmember", "keys", "retire", "--config", str(member.dir / "member.toml"))
    assert len(_show(prod, "site-data")["jwks"]["keys"]) == 1
    await asyncio.sleep(1.5)  # a poll or two, signed only by the new key now
    ready = await _ready(prod, await _launch(prod, prod.repos["served"], data=(DATASET,)))
    assert ready["member"] == "site-data" and member.agent.proc.pid == pid and member.agent.proc.poll() is None


def _local_member(fed: SimpleNamespace, tmp: Path, member_id: str, dataset: str) -> SimpleNamespace:
    """A ``local`` member (sandboxed servers beside a dataset) whose agent serves https itself and,
    its public URL being its own https origin, fronts its servers at ``/servers/<launch_id>/``."""
    directory, port = tmp / member_id, free_port()
    agent_url = f"https://127.0.0.1:{port}"
    must("fedmember", "init", str(directory), "--backend", "local", "--id", member_id,
         "--agent-url", agent_url, "--public-url", agent_url)
    cert, key = fed.ca.issue(f"agent-{member_id}")
    edit_toml(directory / "member.toml", {
        "member": {"port": port, "tls_cert_file": str(cert), "tls_key_file": str(key), "ca_bundle": str(fed.ca.bundle),
                   "fetch_allow": ["127.0.0.1/32"], "datasets": [{"id": dataset, "size_bytes": 5 * 1024**3}]},
        "backend": {"kind": "local", "pip_args": ["--no-index"]},
    })
    token = must("fedbroker", "enroll-token", "create", "--name", member_id, env=fed.admin_env).strip().splitlines()[-1]
    must("fedmember", "enroll", fed.broker.url, "--token", token, "--config", str(directory / "member.toml"))
    must("fedbroker", "members", "approve", member_id, env=fed.admin_env)
    agent = serve([str(Path(sys.executable).parent / "fedmember"), "serve", "--config", str(directory / "member.toml")],
                  tmp / f"{member_id}.log", "fedmember listening on")
    return SimpleNamespace(id=member_id, dir=directory, agent=agent, url=agent_url)


async def test_local_member_serves_users_through_its_agents_https_origin(
    prod: SimpleNamespace, tmp_path: Path, require_component: Any
) -> None:
    require_component(shutil.which("bwrap") is not None, "bubblewrap is not installed (apt-get install bubblewrap)")
    dataset = "10.5281/zenodo.515151"
    member = _local_member(prod, tmp_path, "site-local", dataset)
    try:
        _wait("the local member routable", lambda: _show(prod, "site-local")["health"]["routable"])
        ready = (await _launch(prod, prod.repos["other"], data=(dataset,)))[-1]
        assert ready["phase"] == "ready" and ready["member"] == "site-local", ready
        # The broker relayed it: https, on the member's own origin, the server's own port nowhere in it.
        assert ready["url"].startswith(f"{member.url}/servers/") and ready["url"].endswith("/")
        connector = aiohttp.TCPConnector(ssl=prod.ca.client_context())
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            for token, status in ((ready["token"], 200), ("wrong-token", 403)):
                async with http.get(f"{ready['url']}api/status", headers={"Authorization": f"token {token}"}) as resp:
                    body = await resp.text()  # read whole: see _launch
                    assert resp.status == status, body
    finally:
        member.agent.stop()
