"""Fetching a repository at a ref with git, without letting a URL or ref become an option.

URLs and refs come from :class:`fedproto.repospec.RepoSpec`, which already
refuses hostile values; here they are also placed after ``--`` or
``--end-of-options``, git may only use the allowed transports (no ``ext::``,
and ``file`` only in development mode), and nothing prompts for credentials.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from fedproto.repospec import RepoSpec

from . import procs

_COMMIT = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
# Legal in a URL but never needed for a repository, and the stuff of shell injection
# should the URL ever reach a shell (a hook, a credential helper): refuse them outright.
_SHELL_CHARS = re.compile(r"[;|&$`<>(){}\\\s]")


NOT_FOUND_HINT = "Double check your URL and that your repo is public."


class FetchError(Exception):
    """The repository or ref could not be fetched; the message is safe to show users."""


@dataclass(frozen=True)
class Checkout:
    """A working tree at a resolved commit."""

    path: Path
    commit: str


class GitFetcher:
    """Clones repositories for launches."""

    def __init__(self, *, git: str = "git", timeout: float = 300.0, allow_file: bool = False) -> None:
        self.git = git
        self.timeout = timeout
        self.allow_file = allow_file

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="true",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_ALLOW_PROTOCOL="https:http:git" + (":file" if self.allow_file else ""),
            GIT_PROTOCOL_FROM_USER="0",
        )
        return env

    async def _git(self, *args: str, cwd: Path | None = None) -> list[str]:
        return await procs.run([self.git, "-c", "advice.detachedHead=false", *args], timeout=self.timeout, cwd=cwd, env=self._env())

    async def fetch(self, spec: RepoSpec, dest: Path) -> Checkout:
        """Clone ``spec.repo_url`` into ``dest`` (which must not exist) and check out ``spec.ref``."""
        if spec.provider not in ("git", "gh"):
            raise FetchError(f"provider {spec.provider} cannot be fetched with git here")
        if _SHELL_CHARS.search(spec.repo_url) or spec.repo_url.startswith("-"):
            raise FetchError("the repository URL contains characters that are not allowed")
        if spec.repo_url.startswith("file:") and not self.allow_file:
            raise FetchError("file:// repositories are only allowed in development mode (--dev)")
        try:
            await self._git("clone", "--quiet", "--no-checkout", "--", spec.repo_url, str(dest))
        except procs.ProcessError as exc:
            raise FetchError(
                f"Could not clone {spec.repo_url}: {_first_meaningful(exc)}. {NOT_FOUND_HINT}"
            ) from None
        commit = await self._resolve(spec, dest)
        try:
            await self._git("checkout", "--quiet", "--detach", commit, cwd=dest)
        except procs.ProcessError as exc:
            raise FetchError(f"Could not check out {commit}: {_first_meaningful(exc)}") from None
        return Checkout(path=dest, commit=commit)

    async def _resolve(self, spec: RepoSpec, dest: Path) -> str:
        # A branch exists only as origin/<name> after a --no-checkout clone; tags, HEAD
        # and commit ids resolve as they are.
        for candidate in (f"refs/remotes/origin/{spec.ref}", spec.ref):
            try:
                lines = await self._git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}", cwd=dest)
            except procs.ProcessError:
                continue
            if lines and _COMMIT.match(lines[-1].strip()):
                return lines[-1].strip()
        raise FetchError(
            f"Could not resolve ref for {spec.provider}:{spec.spec}. {NOT_FOUND_HINT}"
        )


def _first_meaningful(exc: procs.ProcessError) -> str:
    """git's first ``fatal:``/``error:``/``remote:`` line, without the prefix: it names the cause.

    The last line is often only git's generic "...and the repository exists."
    """
    lines = [line.strip() for line in exc.tail if line.strip()]
    for line in lines:
        prefix, _, rest = line.partition(":")
        if prefix in ("fatal", "error", "remote") and rest.strip():
            return rest.strip().rstrip(".")
    return (lines[0] if lines else str(exc)).rstrip(".")
