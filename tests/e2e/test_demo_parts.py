"""The demo's parts without processes: configs the member agent accepts, repos, directories, the sweep."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fedbroker.demo import command as democmd
from fedbroker.demo.childproc import sweep_processes_under
from fedbroker.config import BrokerConfig
from fedbroker.demo.run import DemoError, prepare_directory, set_section
from fedbroker.demo.repos import DEMO_DATASET, EXAMPLES, create_dataset, create_repos
from fedbroker.demo.sites import SITES, DemoSite, member_toml
from fedbroker.initdir import render_config
from fedmember.config import load_config
from fedproto.repospec import RepoSpec


@pytest.mark.parametrize("site", SITES, ids=lambda s: s.member_id)
def test_member_toml_is_what_the_agent_loads(tmp_path: Path, site: DemoSite) -> None:
    (tmp_path / "member.toml").write_text(member_toml(site, "http://127.0.0.1:9999", 9999, tmp_path / "data"))
    config = load_config(tmp_path / "member.toml")
    assert (config.member.id, config.member.port, config.member.dev) == (site.member_id, 9999, True)
    assert config.member.location.region == site.region
    assert config.backend.kind == "local" and config.backend.capacity == site.capacity  # type: ignore[attr-defined]
    assert [d.id for d in config.member.datasets] == ([DEMO_DATASET] if site.stores_dataset else [])


def test_sites_differ_in_place_capacity_and_data() -> None:
    assert len({(s.lat, s.lon) for s in SITES}) == len({s.region for s in SITES}) == len(SITES) == 3
    assert len({s.capacity for s in SITES}) == 3
    assert sum(s.stores_dataset for s in SITES) == 1


def test_set_section_sets_values_that_the_broker_config_reads() -> None:
    text = render_config({"dev": True})
    text = set_section(text, "health", {"interval": 0.5, "unhealthy_after": 1})
    text = set_section(text, "nosuch", {"x": "y"})
    data = tomllib.loads(text)
    assert data["health"] == {"interval": 0.5, "unhealthy_after": 1} and data["nosuch"] == {"x": "y"}
    del data["nosuch"]
    assert BrokerConfig.model_validate(data).health.interval == 0.5


def test_example_repos_are_committed_tagged_and_parse_as_git_specs(tmp_path: Path) -> None:
    repos = create_repos(tmp_path)
    assert [r.name for r in repos] == [e.name for e in EXAMPLES]
    assert len({r.requirements for r in repos}) == len(repos)  # each builds its own environment
    for repo in repos:
        tags = subprocess.run(["git", "tag"], cwd=repo.path, capture_output=True, text=True, check=True).stdout
        assert tags.split() == ["v1"]
        parsed = RepoSpec.parse("git", repo.spec("v1"), allow_file=True)
        assert (parsed.repo_url, parsed.ref) == (repo.url, "v1")
        assert (repo.path / f"{repo.name}.ipynb").exists()
    dataset_repo = next(r for r in repos if r.data)
    assert "data=10.5281%2Fzenodo.3242074" in dataset_repo.launch_path()
    assert "labpath=dataset.ipynb" in dataset_repo.launch_path(lab=True)
    assert create_repos(tmp_path) == repos  # a second run reuses them


def test_dataset_directory_has_a_small_csv(tmp_path: Path) -> None:
    path = create_dataset(tmp_path)
    assert len((path / "temperatures.csv").read_text().splitlines()) == 21


def test_prepare_directory_reuses_only_a_previous_demo(tmp_path: Path) -> None:
    prepare_directory(tmp_path / "new")  # missing: fine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DemoError, match="not empty"):
        prepare_directory(tmp_path / "mine")
    old = tmp_path / "old"
    (old / "members" / "berlin").mkdir(parents=True)
    (old / "demo.json").write_text("{}")
    (old / "notes.txt").write_text("kept")
    prepare_directory(old)
    assert sorted(p.name for p in old.iterdir()) == ["notes.txt"]


def test_sweep_kills_python_started_inside_and_spares_the_rest(tmp_path: Path) -> None:
    inside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path / "x")])
    shell = subprocess.Popen(["sleep", "60"], cwd=tmp_path)  # e.g. a person's shell there
    try:
        assert sweep_processes_under(tmp_path) == [inside.pid]
        assert inside.wait(timeout=10) == -9 and shell.poll() is None
    finally:
        for proc in (inside, shell):
            proc.kill()
            proc.wait()


def test_sweep_ends_a_sandbox_binding_a_path_inside(tmp_path: Path, require_component: Any) -> None:
    # A sandboxed jupyter-server's own arguments name paths inside its sandbox only; the bwrap that
    # runs it binds the member's directory, and is what the sweep finds (an agent that could not
    # stop its servers leaves these). The sandbox is the local backend's kind: --die-with-parent, so
    # killing the outer bwrap ends the namespace and everything in it.
    bwrap = shutil.which("bwrap")
    require_component(bwrap is not None, "bubblewrap is not installed (apt-get install bubblewrap)")
    (tmp_path / "home").mkdir()
    marker = f"/home/sweep-{tmp_path.name}"

    def running() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    sandbox = subprocess.Popen([str(bwrap), "--unshare-pid", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                                "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
                                "/lib64", "--proc", "/proc", "--dev", "/dev", "--bind", str(tmp_path / "home"), marker,
                                "--", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while len(running()) < 2 and time.monotonic() < deadline:  # the outer bwrap and the namespace's init
            time.sleep(0.05)
        assert sandbox.pid in sweep_processes_under(tmp_path)
        assert sandbox.wait(timeout=10) == -9
        deadline = time.monotonic() + 10
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running() == []
    finally:
        sandbox.kill()
        sandbox.wait()


def test_demo_on_a_busy_port_says_so_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = democmd.run(argparse.Namespace(port=busy.getsockname()[1], dir=str(tmp_path / "d")))
    assert code == 1
    err = capsys.readouterr().err
    assert "is in use; pass --port 0" in err and f"logs are kept in {tmp_path / 'd'}" in err
