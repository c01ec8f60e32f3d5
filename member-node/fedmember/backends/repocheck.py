"""Checks on a hostile checkout before anything uses it: symlinks and ``requirements.txt``.

A committed symlink that leaves the checkout would let the contents API (or
pip, reading ``requirements.txt``) read host files without running any code,
so a checkout holding one is refused. ``requirements.txt`` may only name
packages: an option line (``--index-url``, ``--find-links``, ``-e``, ``-r``,
``-c``...), a direct URL or a local path would override the operator's index
settings (``pip_args``) or read files beside the checkout, so each is refused
with the line that holds it. ``--hash`` after a requirement is fine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_REPORTED = 3
# A requirement: a name, optional extras, then a version spec and/or a marker. No URLs.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?(?=$|[\s<>=!~;(])")
_HASH = re.compile(r"\s--hash[=\s]\S+")


class RepoRefused(Exception):
    """The repository cannot be launched here; the message says why and is safe to show."""


def leaving_symlinks(root: Path) -> list[str]:
    """Paths (relative to ``root``) of symlinks that point outside ``root`` or at an absolute path."""
    real_root = Path(os.path.realpath(root))
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and ".git" in dirnames:
            dirnames.remove(".git")  # git's own files, never from the remote's tree
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            resolved = Path(os.path.realpath(path))
            if os.path.isabs(target) or not (resolved == real_root or real_root in resolved.parents):
                found.append(str(path.relative_to(root)))
    return sorted(found)


def check_symlinks(root: Path) -> None:
    found = leaving_symlinks(root)
    if found:
        shown = ", ".join(found[:MAX_REPORTED]) + (f" and {len(found) - MAX_REPORTED} more" if len(found) > MAX_REPORTED else "")
        raise RepoRefused(
            f"The repository has symbolic links that point outside it ({shown}); "
            "this site does not launch such repositories. Make them relative links inside the repository."
        )


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each requirement, continuation lines joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            lines.append((start, joined))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def requirement_problem(line: str) -> str | None:
    """Why one requirement line is refused, or None when it only names a package."""
    if line.startswith("-"):
        return "pip options are not allowed; this site installs only from its own package index"
    bare = _HASH.sub("", " " + line).strip()
    if " -" in bare or "\t-" in bare:
        return "pip options are not allowed; this site installs only from its own package index"
    if "://" in bare or re.search(r"\s@\s|^[^;]*@", bare):
        return "direct URL references are not allowed; name the package and a version instead"
    if bare.startswith((".", "/", "~")) or not _NAME.match(bare):
        return "only package names with versions are allowed (no paths or files)"
    return None


def check_requirements(path: Path) -> None:
    """Refuse a ``requirements.txt`` with anything but package requirements."""
    if not path.is_file():
        return
    problems = []
    for number, line in _logical_lines(path.read_text(errors="replace")):
        reason = requirement_problem(line)
        if reason:
            problems.append(f"line {number} ({line[:80]!r}): {reason}")
    if problems:
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise RepoRefused("requirements.txt refused: " + "; ".join(problems[:MAX_REPORTED]) + more)
