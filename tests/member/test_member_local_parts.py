"""The local backend's parts on their own: hostile specs, git, data links, config edits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
from agentkit import git_spec_of

from fedmember.backends.datamount import link_name, mount_datasets
from fedmember.backends.gitfetch import FetchError, GitFetcher
from fedmember.backends.repocheck import RepoRefused, check_requirements, check_symlinks, leaving_symlinks
from fedmember.backends.sandbox import HOME, Jail, Limits, Mount, SandboxError, bwrap_argv
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
    for bind in (False, True):
        messages, placed = mount_datasets(request, [Dataset(id="10.1/x", mount_path=str(source))], root, bind=bind)
        assert "not a directory" in messages[0] and not placed and not list(elsewhere.iterdir())


def test_a_repo_cannot_take_a_dataset_mount_point(tmp_path: Path) -> None:
    source = tmp_path / "dataset"
    source.mkdir()
    root = tmp_path / "repo"
    (root / "data" / "10.1_x").mkdir(parents=True)
    request = LaunchRequest(provider="gh", spec="o/r/main", launch_id="launch-0001", data=["10.1/x"])
    messages, placed = mount_datasets(request, [Dataset(id="10.1/x", mount_path=str(source))], root, bind=True)
    assert "already exists" in messages[0] and not placed


@pytest.mark.parametrize(
    "line",
    [
        "--index-url http://127.0.0.1:9/simple",
        "-i http://127.0.0.1:9/simple",
        "--extra-index-url=http://127.0.0.1:9/simple",
        "--find-links http://127.0.0.1:9/",
        "-f http://127.0.0.1:9/",
        "-e git+https://example.org/x.git#egg=x",
        "-r ../../other.txt",
        "-c /etc/constraints.txt",
        "--trusted-host example.org",
        "pyyaml --index-url http://127.0.0.1:9/simple",
        "evil @ https://127.0.0.1:9/evil.whl",
        "https://127.0.0.1:9/evil.tar.gz",
        "git+https://example.org/x.git",
        "./local-package",
        "/abs/path/pkg.whl",
        "--no-index \\\n",
    ],
)
def test_requirements_with_options_urls_or_paths_are_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# fine\npyyaml>=6\n" + line.replace("\\n", "\n") + "\n")
    with pytest.raises(RepoRefused, match=r"requirements.txt refused: line 3"):
        check_requirements(path)


def test_plain_requirements_pass(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# comment\npyyaml\nnumpy>=1.26,<3  # trailing\nrequests[socks]==2.31\n"
        'tomli; python_version < "3.11"\nattrs==23.1 \\\n    --hash=sha256:abc\n\n'
    )
    check_requirements(path)


def test_symlinks_leaving_the_checkout_are_found(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    os.symlink("sub/f.txt", root / "inside")
    os.symlink("../repo/sub", root / "sub" / "loop-inside")
    os.symlink("/etc/fedmember/keys", root / "keys")
    os.symlink("../../outside", root / "sub" / "up")
    os.symlink(root / "sub", root / "absolute-inside")  # absolute: it points elsewhere in the sandbox
    assert leaving_symlinks(root) == ["absolute-inside", "keys", "sub/up"]
    with pytest.raises(RepoRefused, match="symbolic links that point outside it"):
        check_symlinks(root)


def test_the_sandbox_command_line_mounts_only_what_a_launch_needs(tmp_path: Path) -> None:
    home, env, data = tmp_path / "repo", tmp_path / "env", tmp_path / "dataset"
    jail = Jail(home=home, mounts=(Mount(env, str(env)), Mount(data, f"{HOME}/data/d")), uid=61003)
    argv = bwrap_argv(["python", "-m", "x"], jail, runtime=[Path("/opt/py")], limits=Limits(2**30, 64), as_root=True)
    pairs = {(argv[i], argv[i + 1], argv[i + 2]) for i in range(len(argv) - 2) if argv[i].endswith("bind")}
    assert ("--bind", str(home), HOME) in pairs and ("--ro-bind", str(env), str(env)) in pairs
    assert ("--ro-bind", str(data), f"{HOME}/data/d") in pairs and ("--ro-bind", "/opt/py", "/opt/py") in pairs
    assert not any(src in ("/", "/etc", "/root", "/home", "/proc", "/var") for _, src, _ in pairs)
    assert argv.index(f"{HOME}/data/d") > argv.index(HOME)  # the dataset is mounted over the checkout
    tail = argv[argv.index("--") + 1 :]
    assert tail[:3] == ["prlimit", "--as=1073741824", "--nproc=64"]
    assert tail[4:6] == ["setpriv", "--reuid=61003"] and tail[-3:] == ["python", "-m", "x"]
    rootless = bwrap_argv(["true"], Jail(home=home), runtime=[], limits=Limits(), as_root=False)
    assert "--unshare-user" in rootless and "setpriv" not in rootless and "--cap-add" not in rootless
    for uid in (None, 0):  # root's sandbox never runs repository code as root
        with pytest.raises(SandboxError, match="unprivileged uid"):
            bwrap_argv(["true"], Jail(home=home, uid=uid), runtime=[], limits=Limits(), as_root=True)


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
