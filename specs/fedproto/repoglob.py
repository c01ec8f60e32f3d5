"""Repository-key globs: how a member says which repositories it serves (the status ad's ``serves``).

Members are semi-trusted, so the broker never evaluates a member-supplied regular expression (a
pattern like ``(a+)+$`` could stall routing). A glob here has one wildcard, ``*`` (any run of
characters, ``/`` included), is length- and wildcard-capped, and is matched without ``re`` in time
bounded by its length times the key's. Matching ignores case (``gh``, ``gl`` and ``gist`` keys are
lower-cased; a wider match only costs a refused launch, which fails over).
"""

from __future__ import annotations

from typing import Annotated, Iterable

from pydantic import AfterValidator

MAX_GLOB_CHARS = 200
MAX_GLOB_STARS = 4
MAX_SERVES = 64
_FORBIDDEN = set("?[]{}\\")


def check_glob(pattern: str) -> str:
    """``pattern`` when it is a valid repo-key glob, else ValueError saying why."""
    if not pattern or len(pattern) > MAX_GLOB_CHARS:
        raise ValueError(f"a repo-key glob has 1 to {MAX_GLOB_CHARS} characters")
    if any(c in _FORBIDDEN or not c.isprintable() or c.isspace() for c in pattern):
        raise ValueError("a repo-key glob has no spaces and no ?, [], {} or \\: only * is a wildcard")
    if pattern.count("*") > MAX_GLOB_STARS:
        raise ValueError(f"a repo-key glob has at most {MAX_GLOB_STARS} '*'")
    return pattern


RepoGlob = Annotated[str, AfterValidator(check_glob)]


def glob_matches(pattern: str, key: str) -> bool:
    """Whether the repo key (``provider:repo``) matches the glob, ignoring case.

    Greedy leftmost matching of the literal pieces between ``*`` is exact when ``*`` is the only
    wildcard, so no backtracking: at most one ``str.find`` per piece.
    """
    pieces = pattern.casefold().split("*")
    key = key.casefold()
    if len(pieces) == 1:
        return key == pieces[0]
    first, *middle, last = pieces
    if not key.startswith(first) or not key.endswith(last) or len(key) < len(first) + len(last):
        return False
    pos, end = len(first), len(key) - len(last)
    for piece in middle:
        found = key.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def serves_repo(serves: Iterable[str] | None, key: str) -> bool:
    """Whether a member advertising ``serves`` (None: everything its providers allow) serves ``key``."""
    return serves is None or any(glob_matches(p, key) for p in serves)
