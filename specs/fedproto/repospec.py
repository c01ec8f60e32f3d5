"""Provider/spec strings in BinderHub's formats: parsing, validation and the repo key.

``RepoSpec.parse("gh", "org/repo/ref")`` gives the clone URL, the ref, the repo
without its ref (what routing hashes on, so every ref of a repo lands together)
and, for data repositories (Zenodo, Figshare, ...), the dataset identity.
Hostile values (control characters, ``..``, leading ``-``, odd schemes) are
refused here, once, so no backend has to think about them again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

from .errors import SpecError
from .providers import PROVIDER_TABLE

REPO_PROVIDERS = tuple(p.prefix for p in PROVIDER_TABLE if not p.data)
DATA_PROVIDERS = tuple(p.prefix for p in PROVIDER_TABLE if p.data)
PROVIDERS = REPO_PROVIDERS + DATA_PROVIDERS

MAX_SPEC_LENGTH = 1024
_GH_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_GL_PATH = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)+$")
_GIST_ID = re.compile(r"^[0-9a-fA-F]{1,64}$")
_DOI = re.compile(r"^10\.\d{4,9}/[-._;()/:A-Za-z0-9]+$")
_HYDROSHARE_ID = re.compile(r"^[0-9a-f]{32}$")
_REF = re.compile(r"^[A-Za-z0-9._/@+^~{}-]{1,255}$")
_REMOTE_SCHEMES = ("https", "http", "git")
# Searched once per launch (the front door's hot path), instead of a Python loop over characters or segments.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|\Z)")


def _check_ref(ref: str) -> str:
    if not _REF.match(ref) or ref.startswith(("-", "/")) or ".." in ref or ref.endswith((".lock", "/")):
        raise SpecError(f"invalid ref {ref!r}", reason="bad_ref")
    return ref


def _check_url(url: str, allow_file: bool) -> str:
    if any(ord(c) < 0x21 or c in "\\\"'<>`" for c in url) or url.startswith("-"):
        raise SpecError("repository URL contains characters that are not allowed", reason="bad_url")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if not allow_file:
            raise SpecError(
                "file:// repository URLs are only allowed in development mode (--dev)",
                reason="file_url_refused",
            )
        if not parts.path.startswith("/") or "/../" in parts.path + "/" or parts.netloc:
            raise SpecError("file:// URL must be an absolute local path", reason="bad_url")
        return url
    if parts.scheme not in _REMOTE_SCHEMES or not parts.netloc or not parts.hostname:
        raise SpecError(
            f"repository URL must start with https://, http:// or git:// (got {url[:60]!r})",
            reason="bad_url",
        )
    return url


@dataclass(frozen=True)
class RepoSpec:
    """A parsed launch target."""

    provider: str
    spec: str
    repo: str  # the repository (or dataset) without ref: the routing affinity key's input
    ref: str
    repo_url: str
    dataset_id: str | None = None  # for data providers: the record's own identity (DOI, URL)

    @cached_property
    def key(self) -> str:
        """``provider:repo`` normalised; refs of one repo share it. Cached: routing reads it once
        per member it prices, dozens of times a decision."""
        repo = self.repo.lower() if self.provider in ("gh", "gist", "gl") else self.repo
        return f"{self.provider}:{repo}"

    @property
    def binder_request(self) -> str:
        return f"v2/{self.provider}/{self.spec}"

    @classmethod
    def parse(cls, provider: str, spec: str, *, allow_file: bool = False) -> RepoSpec:
        if provider not in PROVIDERS:
            raise SpecError(f"No provider found for prefix {provider!r}", reason="unknown_provider")
        if not spec or len(spec) > MAX_SPEC_LENGTH:
            raise SpecError("spec is empty or too long", reason="bad_spec")
        if _CONTROL.search(spec):
            raise SpecError("spec contains control characters", reason="bad_spec")
        # Checked on the unescaped spec too: BinderHub unescapes a git URL before using it, and a
        # spec goes into upstream URL paths, where a '.' or '..' segment would name another route.
        if _DOT_SEGMENT.search(unquote(spec)):
            raise SpecError("spec must not contain '.' or '..' path segments", reason="bad_spec")
        return _PARSERS[provider](spec, allow_file)


def _parse_gh(spec: str, allow_file: bool) -> RepoSpec:
    parts = spec.split("/", 2)
    if len(parts) != 3 or not parts[2]:
        raise SpecError("gh spec must be <owner>/<repo>/<ref>", reason="bad_spec")
    owner, name, ref = parts[0], parts[1], _check_ref(unquote(parts[2]))
    name = name[:-4] if name.endswith(".git") else name
    if not _GH_OWNER.match(owner) or not _REPO_NAME.match(name) or name in (".", ".."):
        raise SpecError(f"invalid GitHub repository {owner}/{name}", reason="bad_spec")
    return RepoSpec("gh", spec, f"{owner}/{name}", ref, f"https://github.com/{owner}/{name}")


def _parse_gl(spec: str, allow_file: bool) -> RepoSpec:
    quoted, sep, ref = spec.partition("/")
    path = unquote(quoted)
    if not sep or not ref or not _GL_PATH.match(path) or ".." in path.split("/"):
        raise SpecError("gl spec must be <url-escaped group/project>/<ref>", reason="bad_spec")
    return RepoSpec("gl", spec, path, _check_ref(unquote(ref)), f"https://gitlab.com/{path}")


def _parse_gist(spec: str, allow_file: bool) -> RepoSpec:
    parts = spec.split("/", 2)
    if len(parts) < 2 or not _GH_OWNER.match(parts[0]) or not _GIST_ID.match(parts[1]):
        raise SpecError("gist spec must be <user>/<gist id>[/<ref>]", reason="bad_spec")
    ref = _check_ref(unquote(parts[2])) if len(parts) == 3 and parts[2] else "HEAD"
    return RepoSpec(
        "gist", spec, f"{parts[0]}/{parts[1]}", ref, f"https://gist.github.com/{parts[0]}/{parts[1]}.git"
    )


def _parse_git(spec: str, allow_file: bool) -> RepoSpec:
    quoted, sep, ref = spec.rpartition("/")
    if not sep or not quoted or not ref:
        raise SpecError("git spec must be <url-escaped repository URL>/<ref>", reason="bad_spec")
    url = _check_url(unquote(quoted), allow_file)
    return RepoSpec("git", spec, url, _check_ref(unquote(ref)), url)


def _parse_doi(provider: str, pattern_hint: str) -> Callable[[str, bool], RepoSpec]:
    def parse(spec: str, allow_file: bool) -> RepoSpec:
        doi = unquote(spec).removeprefix("https://doi.org/").removeprefix("doi:").rstrip("/")
        if not _DOI.match(doi) or ".." in doi:
            raise SpecError(f"{provider} spec must be a DOI such as {pattern_hint}", reason="bad_spec")
        return RepoSpec(provider, spec, doi, "HEAD", f"https://doi.org/{doi}", dataset_id=doi)

    return parse


def _parse_hydroshare(spec: str, allow_file: bool) -> RepoSpec:
    value = unquote(spec).rstrip("/")
    if _HYDROSHARE_ID.match(value):
        doi = f"10.4211/hs.{value}"
    elif _DOI.match(value) and value.startswith("10.4211/hs."):
        doi = value
    else:
        raise SpecError("hydroshare spec must be a resource id or a 10.4211/hs.* DOI", reason="bad_spec")
    return RepoSpec("hydroshare", spec, doi, "HEAD", f"https://doi.org/{doi}", dataset_id=doi)


def _parse_ckan(spec: str, allow_file: bool) -> RepoSpec:
    url = _check_url(unquote(spec.rstrip("/")), allow_file=False)
    if "/dataset/" not in urlsplit(url).path:
        raise SpecError("ckan spec must be the URL-escaped URL of a CKAN dataset page", reason="bad_spec")
    return RepoSpec("ckan", spec, url, "HEAD", url, dataset_id=url)


_PARSERS: dict[str, Callable[[str, bool], RepoSpec]] = {
    "gh": _parse_gh,
    "gl": _parse_gl,
    "gist": _parse_gist,
    "git": _parse_git,
    "zenodo": _parse_doi("zenodo", "10.5281/zenodo.3242074"),
    "figshare": _parse_doi("figshare", "10.6084/m9.figshare.9782777.v1"),
    "dataverse": _parse_doi("dataverse", "10.7910/DVN/TJCLKP"),
    "hydroshare": _parse_hydroshare,
    "ckan": _parse_ckan,
}


def git_spec(url: str, ref: str) -> str:
    """The ``git`` provider spec for a clone URL and ref (URL-escaped as BinderHub expects)."""
    return f"{quote(url, safe='')}/{quote(ref, safe='')}"
