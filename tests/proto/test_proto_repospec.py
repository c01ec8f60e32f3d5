"""Provider/spec parsing in BinderHub's formats, including hostile values."""

from __future__ import annotations

import pytest

from fedproto.errors import SpecError
from fedproto.repospec import RepoSpec, git_spec

GOOD = [
    ("gh", "binderhub-ci-repos/requirements/HEAD", "gh:binderhub-ci-repos/requirements", "HEAD", None),
    ("gh", "Org/Repo.git/feature%2Fx", "gh:org/repo", "feature/x", None),
    ("gl", "group%2Fsub%2Fproject/main", "gl:group/sub/project", "main", None),
    ("gist", "someone/abc123def", "gist:someone/abc123def", "HEAD", None),
    ("git", git_spec("https://example.org/r.git", "v1.0"), "git:https://example.org/r.git", "v1.0", None),
    ("zenodo", "10.5281/zenodo.3242074", "zenodo:10.5281/zenodo.3242074", "HEAD", "10.5281/zenodo.3242074"),
    ("figshare", "10.6084/m9.figshare.9782777.v1", "figshare:10.6084/m9.figshare.9782777.v1", "HEAD", "10.6084/m9.figshare.9782777.v1"),
    ("dataverse", "10.7910/DVN/TJCLKP", "dataverse:10.7910/DVN/TJCLKP", "HEAD", "10.7910/DVN/TJCLKP"),
    ("hydroshare", "b8f6eae9d89241cf8b5904033460af61", "hydroshare:10.4211/hs.b8f6eae9d89241cf8b5904033460af61", "HEAD",
     "10.4211/hs.b8f6eae9d89241cf8b5904033460af61"),
    ("ckan", "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample", "ckan:https://demo.ckan.org/dataset/sample", "HEAD",
     "https://demo.ckan.org/dataset/sample"),
]


@pytest.mark.parametrize("provider, spec, key, ref, dataset", GOOD, ids=[g[0] + ":" + g[1][:30] for g in GOOD])
def test_parses(provider, spec, key, ref, dataset) -> None:
    parsed = RepoSpec.parse(provider, spec)
    assert (parsed.key, parsed.ref, parsed.dataset_id) == (key, ref, dataset)
    assert parsed.binder_request == f"v2/{provider}/{spec}"


def test_refs_of_one_repo_share_the_key() -> None:
    assert RepoSpec.parse("gh", "a/b/main").key == RepoSpec.parse("gh", "A/B/0123abc").key


BAD = [
    ("unknown-provider", "nosuch", "x/y/z", "unknown_provider"),
    ("gh-no-ref", "gh", "org/repo", "bad_spec"),
    ("gh-dotdot-repo", "gh", "org/../HEAD", "bad_spec"),
    ("gh-option-ref", "gh", "org/repo/--upload-pack=touch%20x", "bad_ref"),
    ("gh-dotdot-ref", "gh", "org/repo/a..b", "bad_ref"),
    ("gh-semicolon-ref", "gh", "org/repo/main;rm%20-rf", "bad_ref"),
    ("gh-newline", "gh", "org/repo/main\nx", "bad_spec"),
    ("gh-space-ref", "gh", "org/repo/ma%20in", "bad_ref"),
    ("git-file-without-dev", "git", git_spec("file:///srv/repos/r.git", "main"), "file_url_refused"),
    ("git-no-scheme", "git", git_spec("example.org/r.git", "main"), "bad_url"),
    ("git-ssh-option", "git", git_spec("-oProxyCommand=x", "main"), "bad_url"),
    ("git-ext-scheme", "git", git_spec("ext::sh -c touch% /tmp/x", "main"), "bad_url"),
    ("zenodo-not-doi", "zenodo", "12345", "bad_spec"),
    ("hydroshare-bad", "hydroshare", "zzz", "bad_spec"),
    ("ckan-not-dataset", "ckan", "https%3A%2F%2Fdemo.ckan.org%2F", "bad_spec"),
    ("too-long", "gh", "a/b/" + "c" * 2000, "bad_spec"),
]


@pytest.mark.parametrize("provider, spec, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_refuses(provider, spec, reason) -> None:
    with pytest.raises(SpecError) as info:
        RepoSpec.parse(provider, spec)
    assert info.value.reason == reason


def test_file_urls_only_in_dev() -> None:
    spec = git_spec("file:///srv/repos/r.git", "main")
    assert RepoSpec.parse("git", spec, allow_file=True).repo_url == "file:///srv/repos/r.git"
    with pytest.raises(SpecError):
        RepoSpec.parse("git", git_spec("file://host/srv/r.git", "main"), allow_file=True)
