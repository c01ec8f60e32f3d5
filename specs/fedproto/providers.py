"""The provider table: every repository and data provider prefix, as BinderHub offers them.

One table for everything that lists providers: spec parsing (:mod:`fedproto.repospec`), the
broker's launch form and launch page, and the form's script, which gets the table as JSON
(:func:`provider_table`) and builds ``/v2/<prefix>/<spec>`` from what the user typed with
``strip``, ``drop_git_suffix``, ``escape`` and ``has_ref``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Provider:
    """One provider prefix and how a person names and types its repositories."""

    prefix: str
    name: str  # the menu's and the launch page's name
    label: str  # the repository field's label
    placeholder: str
    data: bool = False  # a data repository (DOI or dataset URL), not a git repository
    has_ref: bool = True  # the spec ends in /<ref>
    strip: str = ""  # a regular expression (JavaScript and Python alike) removed from typed input: its site's URL
    drop_git_suffix: bool = False  # "org/repo.git" names "org/repo"
    escape: bool = False  # the repository part is URL-escaped in the spec (GitLab paths, git and CKAN URLs)


PROVIDER_TABLE: tuple[Provider, ...] = (
    Provider("gh", "GitHub", "GitHub repository name or URL", "binder-examples/requirements",
             strip=r"^(https?://)?(www\.)?github\.com/", drop_git_suffix=True),
    Provider("gist", "Gist", "Gist ID (username/gist id) or URL", "username/1a2b3c4d5e6f",
             strip=r"^(https?://)?gist\.github\.com/"),
    Provider("gl", "GitLab.com", "GitLab.com repository or URL", "group/project",
             strip=r"^(https?://)?gitlab\.com/", drop_git_suffix=True, escape=True),
    Provider("git", "Git repository", "Any git repository URL", "https://git.example.org/repo.git", escape=True),
    Provider("zenodo", "Zenodo DOI", "Zenodo DOI", "10.5281/zenodo.3242074", data=True, has_ref=False,
             strip=r"^(https?://)?(dx\.)?doi\.org/"),
    Provider("figshare", "Figshare DOI", "Figshare DOI", "10.6084/m9.figshare.9782777.v1", data=True, has_ref=False,
             strip=r"^(https?://)?(dx\.)?doi\.org/"),
    Provider("hydroshare", "HydroShare resource", "HydroShare resource id or DOI", "b8f6eae9d89241cf8b5904033460af61",
             data=True, has_ref=False, strip=r"^(https?://)?(dx\.)?doi\.org/"),
    Provider("dataverse", "Dataverse DOI", "Dataverse DOI", "10.7910/DVN/TJCLKP", data=True, has_ref=False,
             strip=r"^(https?://)?(dx\.)?doi\.org/"),
    Provider("ckan", "CKAN dataset", "CKAN dataset URL", "https://ckan.example.org/dataset/example", data=True,
             has_ref=False, escape=True),
)
PROVIDERS_BY_PREFIX = {p.prefix: p for p in PROVIDER_TABLE}


def provider_table() -> list[dict[str, Any]]:
    """The table as JSON-ready dicts, in menu order."""
    return [asdict(p) for p in PROVIDER_TABLE]
