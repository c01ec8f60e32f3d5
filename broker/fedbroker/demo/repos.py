"""The demo's example repositories: small local git repos, one notebook each, installable offline.

Their ``requirements.txt`` files differ (so each builds its own environment on a member) but
name only packages the agent's environment already has, or nothing: members install with
``pip --no-index`` and find them already satisfied, so the demo never needs a network.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from fedproto.repospec import git_spec

DEMO_DATASET = "10.5281/zenodo.3242074"
DEMO_TAG = "v1"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Federation demo",
    "GIT_AUTHOR_EMAIL": "demo@example.org",
    "GIT_COMMITTER_NAME": "Federation demo",
    "GIT_COMMITTER_EMAIL": "demo@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def notebook(title: str, code: str) -> str:
    """A minimal nbformat-4 notebook: one markdown cell and one code cell."""
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [code]},
    ]
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


@dataclass(frozen=True)
class ExampleRepo:
    """One example repository: its files and the datasets its launch link asks for."""

    name: str
    title: str
    requirements: str
    code: str
    data: tuple[str, ...] = ()
    path: Path = field(default=Path("."))

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def spec(self, ref: str = "main") -> str:
        """The ``git`` provider spec (BinderHub's escaping) of this repo at ``ref``."""
        return git_spec(self.url, ref)

    def launch_path(self, ref: str = "main", *, lab: bool = False) -> str:
        """``/v2/git/<spec>`` plus ``?data=`` for what it needs; with ``lab``, the notebook to open in JupyterLab."""
        query = [("data", d) for d in self.data] + ([("labpath", f"{self.name}.ipynb")] if lab else [])
        return f"/v2/git/{self.spec(ref)}" + (f"?{urlencode(query)}" if query else "")

    def files(self) -> dict[str, str]:
        data_note = "".join(f"\nIt needs the dataset `{d}`: launch it with `?data={d}`.\n" for d in self.data)
        return {
            "requirements.txt": self.requirements,
            "README.md": f"# {self.title}\n\nAn example repository of the binder-federation demo.\n{data_note}",
            f"{self.name}.ipynb": notebook(self.title, self.code),
        }


EXAMPLES: tuple[ExampleRepo, ...] = (
    ExampleRepo(
        "hello", "Hello, federation", "",
        "import platform, socket\nprint('Hello from', socket.gethostname(), 'running Python', platform.python_version())\n",
    ),
    ExampleRepo(
        "tables", "YAML and JSON tables", "# already installed beside the agent, so no download\npyyaml\n",
        "import yaml\nprint(yaml.safe_dump({'members': 3, 'federated': True}))\n",
    ),
    ExampleRepo(
        "dataset", "Explore a dataset stored at one member", "# reads plain CSV with the standard library\n",
        "import csv, pathlib\nfor path in sorted(pathlib.Path('data').glob('*/*.csv')):\n"
        "    rows = list(csv.reader(path.open()))\n    print(path, len(rows) - 1, 'rows; columns', rows[0])\n",
        data=(DEMO_DATASET,),
    ),
)


# What the broker's canaries launch on every member: no requirements, so it builds in a moment.
CANARY_EXAMPLE = ExampleRepo("canary", "Canary", "", "print('the canary launched')\n")


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **_GIT_ENV}, check=True,
                            capture_output=True, text=True)
    return result.stdout.strip()


def create_repo(root: Path, example: ExampleRepo) -> ExampleRepo:
    """Write and commit ``example`` under ``root`` (on ``main``, tagged ``v1``); reuse it when it exists."""
    path = (root / example.name).resolve()
    placed = ExampleRepo(example.name, example.title, example.requirements, example.code, example.data, path)
    if (path / ".git").is_dir():
        return placed
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "--quiet", "--initial-branch=main")
    for name, text in placed.files().items():
        (path / name).write_text(text)
    _git(path, "add", "-A")
    _git(path, "commit", "--quiet", "-m", f"{example.title}")
    _git(path, "tag", DEMO_TAG)
    return placed


def create_repos(root: Path, examples: tuple[ExampleRepo, ...] = EXAMPLES) -> list[ExampleRepo]:
    """Every example repository, created under ``root``."""
    return [create_repo(root, example) for example in examples]


def create_dataset(root: Path) -> Path:
    """A small local directory standing in for the stored dataset (what a member would mount read-only)."""
    path = root / "zenodo-3242074"
    path.mkdir(parents=True, exist_ok=True)
    rows = ["station,year,mean_temperature_c"] + [f"S{i % 5},{2000 + i},{8.0 + (i * 37 % 50) / 10:.1f}"
                                                 for i in range(20)]
    (path / "temperatures.csv").write_text("\n".join(rows) + "\n")
    (path / "README.txt").write_text(f"A stand-in for the dataset {DEMO_DATASET}, made by `fedbroker demo`.\n")
    return path
