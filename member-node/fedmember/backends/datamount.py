"""Datasets stored at the site, shown in a launched server's directory as ``data/<name>``.

In the sandbox (``isolation = "bubblewrap"``) each dataset's ``mount_path`` is
a read-only bind mount at ``data/<name>``: the kernel refuses writes, whatever
the file modes, and the contents API's PUT fails. Without the sandbox it is a
symlink, which cannot make its target read-only: the operator must provide a
read-only mount (the README says so). A repository cannot redirect either:
if its ``data`` is anything but a plain directory (a symlink, a file), or
``data/<name>`` already exists, nothing is placed there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fedproto.datasets import Dataset, normalise_dataset_id
from fedproto.launch import LaunchRequest

DATA_DIR = "data"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def link_name(dataset_id: str) -> str:
    """A file name for a dataset id: safe characters only, never ``.``/``..`` or hidden."""
    name = _UNSAFE.sub("_", normalise_dataset_id(dataset_id)).strip("._-")
    return name[:100] or "dataset"


@dataclass(frozen=True)
class Placed:
    """A dataset to show at ``root/data/<name>``, from ``source`` on the host."""

    source: Path
    name: str

    @property
    def relative(self) -> str:
        return f"{DATA_DIR}/{self.name}"


def _data_dir(root: Path) -> Path | None:
    path = root / DATA_DIR
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        return None
    path.mkdir(exist_ok=True)
    return path


def mount_datasets(
    request: LaunchRequest, stored: Sequence[Dataset], root: Path, *, bind: bool = False
) -> tuple[list[str], list[Placed]]:
    """Place every requested dataset stored here under ``root/data``; messages for the user, and what was placed.

    With ``bind`` an empty directory is made for the caller to bind-mount onto;
    otherwise a symlink is made.
    """
    messages: list[str] = []
    placed: list[Placed] = []
    for wanted in request.needed_datasets():
        match = next((d for d in stored if d.matches(wanted)), None)
        if match is None or not match.mount_path:
            messages.append(f"Dataset {wanted} is not stored at this member; fetch it from the notebook")
            continue
        source = Path(match.mount_path)
        if not source.is_absolute() or not source.exists():
            messages.append(f"Dataset {wanted} is configured at {match.mount_path}, which is not available")
            continue
        data_dir = _data_dir(root)
        if data_dir is None:
            messages.append(f"The repository's {DATA_DIR!r} is not a directory; dataset {wanted} not linked")
            continue
        target = data_dir / link_name(wanted)
        try:
            if bind:
                # A bind mount needs a mount point of the same kind as its source.
                target.mkdir() if source.is_dir() else os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            else:
                os.symlink(source, target, target_is_directory=source.is_dir())
        except FileExistsError:
            messages.append(f"{DATA_DIR}/{target.name} already exists in the repository; dataset {wanted} not linked")
            continue
        placed.append(Placed(source, target.name))
        messages.append(f"Dataset {wanted} is available{' read-only' if bind else ''} at {DATA_DIR}/{target.name}")
    return messages, placed
