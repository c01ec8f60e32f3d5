"""Datasets stored at the site, linked into a launched server's directory as ``data/<name>``.

The link points at the dataset's configured ``mount_path``, which the operator
should provide as a read-only mount: a symlink cannot make its target read-only.
A repository cannot redirect the links: if its ``data`` is anything but a plain
directory (a symlink, a file), nothing is linked.
"""

from __future__ import annotations

import os
import re
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


def _data_dir(root: Path) -> Path | None:
    path = root / DATA_DIR
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        return None
    path.mkdir(exist_ok=True)
    return path


def mount_datasets(request: LaunchRequest, stored: Sequence[Dataset], root: Path) -> list[str]:
    """Link every requested dataset stored here into ``root/data``; return messages for the user."""
    messages: list[str] = []
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
            os.symlink(source, target, target_is_directory=source.is_dir())
        except FileExistsError:
            messages.append(f"{DATA_DIR}/{target.name} already exists in the repository; dataset {wanted} not linked")
            continue
        messages.append(f"Dataset {wanted} is available read-only at {DATA_DIR}/{target.name}")
    return messages
