"""The local backend's parts on their own: hostile specs, git, data links, config edits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
from agentkit import git_spec_of

from fedmember.backends.datamount import link_name, mount_datasets
from fedmember.backends.gitfetch import FetchError, GitFetcher
from fedmember.backends.servers import origin_args
from fedmember.config import ConfigError, require_secure_url, set_broker
from fedproto.datasets import Dataset
from fedproto.errors import SpecError
from fedproto.launch import LaunchRequest
from fedproto.repospec import RepoSpec

HOSTILE = [
    ("gh", "org/repo/--upload-pack=touch%20x"),
    ("gh", "org/../../etc/main"),
    ("gh", "-org/repo/main"),
    ("gh", "org/repo/main;rm -rf ~"),
    ("gh", "org/repo/ma\nin"),
    ("gh", "org/repo/..%2F..%2Fetc"),
    ("git", "--upload-pack%3Dtouch%20x/main"),
    ("git", "ext%3A%3Ash%20-c%20touch%20x/main"),
    ("git", "file%3A%2F%2F%2Ftmp%2F..%2Fetc/main"),
    ("git", "https%3A%2F%2Fexample.org%2Fr.git/-x"),
    ("git", "https%3A%2F%2Fexample.org%2Fr.git/main%0Aid"),
]


@pytest.mark.parametrize(("provider", "spec"), HOSTILE, ids=[s for _, s in HOSTILE])
def test_hostile_specs_are_refused(provider: str, spec: str) -> None:
    with pytest.raises(SpecError):
        RepoSpec.parse(provider, spec, allow_file=True)


@pytest.mark.parametrize("url", ["https://example.org/r.git;id", "https://example.org/$(id)", "https://example.org/a|b"])
async def test_git_refuses_shell_characters(tmp_path: Path, url: str) -> None:
    spec = RepoSpec("git", "x", url, "main", url)
    with pytest.raises(FetchError, match="not allowed"):
        await GitFetcher().fetch(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_file_urls_need_dev() -> None:
    with pytest.raises(SpecError, match="development"):
        RepoSpec.parse("git", "file%3A%2F%2F%2Ftmp%2Fr/main")


async def test_git_refuses_file_transport_outside_dev(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    spec = RepoSpec.parse("git", git_spec_of(repo), allow_file=True)
    with pytest.raises(FetchError, match="development"):
        await GitFetcher(allow_file=False).fetch(spec, tmp_path / "out")
    checkout = await GitFetcher(allow_file=True).fetch(spec, tmp_path / "ok")
    assert len(checkout.commit) == 40 and (checkout.path / "requirements.txt").exists()


async def test_git_resolves_tags_and_commits(tmp_path: Path, make_repo: Callable[..., Path]) -> None:
    from agentkit import git

    repo = make_repo()
    git(repo, "tag", "v1")
    commit = git(repo, "rev-parse", "HEAD")
    fetcher = GitFetcher(allow_file=True)
    for i, ref in enumerate(["v1", commit, "HEAD", "main"]):
        spec = RepoSpec.parse("git", git_spec_of(repo, ref), allow_file=True)
        assert (await fetcher.fetch(spec, tmp_path / f"c{i}")).commit == commit


def test_link_names_are_safe() -> None:
    assert link_name("https://doi.org/10.5281/ZENODO.1") == "10.5281_zenodo.1"
    assert link_name("../../etc/passwd") == "etc_passwd"
    assert link_name("..") == "dataset"


def test_a_repo_cannot_redirect_data_links(tmp_path: Path) -> None:
    source = tmp_path / "dataset"
    source.mkdir()
    root = tmp_path / "repo"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "data")
    request = LaunchRequest(provider="gh", spec="o/r/main", launch_id="launch-0001", data=["10.1/x"])
    messages = mount_datasets(request, [Dataset(id="10.1/x", mount_path=str(source))], root)
    assert "not a directory" in messages[0] and not list(elsewhere.iterdir())


def test_origins_become_an_anchored_pattern() -> None:
    assert origin_args(["*"]) == ["--ServerApp.allow_origin=*"]
    args = origin_args(["https://a.org/", "javascript:alert(1)", "https://b.org:8443"])
    assert args[0] == r"--ServerApp.allow_origin_pat=^(https://a\.org|https://b\.org:8443)$"
    assert origin_args(["not an origin"]) == []


def test_set_broker_keeps_comments_and_adds_a_missing_table(tmp_path: Path) -> None:
    path = tmp_path / "member.toml"
    path.write_text('[member]\nid = "a"\n\n[broker]\n# note\nurl = "old"\n\n[backend]\nkind = "local"\n')
    set_broker(path, "https://b.example", "b1")
    text = path.read_text()
    assert '# note' in text and 'url = "https://b.example"' in text and 'id = "b1"' in text and "old" not in text
    assert text.index('id = "b1"') < text.index("[backend]")
    path.write_text('[member]\nid = "a"\n')
    set_broker(path, "https://b.example", 'quote"d')
    assert 'id = "quote\\"d"' in path.read_text()


@pytest.mark.parametrize(
    ("url", "dev", "ok"),
    [
        ("https://broker.example", False, True),
        ("http://127.0.0.1:8000", True, True),
        ("http://127.0.0.1:8000", False, False),
        ("http://broker.example", True, False),
        ("ftp://x", True, False),
        ("", True, False),
    ],
)
def test_secure_url_policy(url: str, dev: bool, ok: bool) -> None:
    if ok:
        require_secure_url(url, dev=dev, what="url")
    else:
        with pytest.raises(ConfigError):
            require_secure_url(url, dev=dev, what="url")
