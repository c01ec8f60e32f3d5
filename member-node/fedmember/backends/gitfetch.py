"""Fetching a repository at a ref with git, without letting a URL or ref become an option.

URLs and refs come from :class:`fedproto.repospec.RepoSpec`, which already
refuses hostile values; here they are also placed after ``--`` or
``--end-of-options``, git may only use the allowed transports (no ``ext::``,
and ``file`` only in development mode), and nothing prompts for credentials.

Outside development mode the repository's host is resolved first and refused when any
address is not public (fedproto's destination policy: no loopback, metadata service or
private network), and git is then pinned to the checked addresses and follows no
redirects, so neither a second DNS answer nor a redirect can send it elsewhere.
Clone failures read the same whatever the far end did, so a refused URL or a closed
port cannot be told apart from an unknown repository: the member is no port scanner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fedproto.repospec import RepoSpec
from fedproto.urlpolicy import AddressPolicy, UrlPolicyError, check_url_destination

from . import procs

_COMMIT = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
# Legal in a URL but never needed for a repository, and the stuff of shell injection
# should the URL ever reach a shell (a hook, a credential helper): refuse them outright.
_SHELL_CHARS = re.compile(r"[;|&$`<>(){}\\\s]")


log = logging.getLogger(__name__)


class FetchError(Exception):
    """The repository or ref could not be fetched; the message is safe to show users."""


@dataclass(frozen=True)
class Checkout:
    """A working tree at a resolved commit."""

    path: Path
    commit: str


class GitFetcher:
    """Clones repositories for launches."""

    def __init__(self, *, git: str = "git", timeout: float = 300.0, allow_file: bool = False,
                 destinations: AddressPolicy | None = None) -> None:
        self.git = git
        self.timeout = timeout
        self.allow_file = allow_file
        # Development mode (allow_file) fetches from anywhere, loopback included; else public hosts only.
        self.destinations = destinations or AddressPolicy.of(dev=allow_file)

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

    async def _git(self, *args: str, cwd: Path | None = None, pins: tuple[str, ...] = ()) -> list[str]:
        return await procs.run([self.git, "-c", "advice.detachedHead=false", *pins, *args], timeout=self.timeout,
                               cwd=cwd, env=self._env())

    async def _pins(self, url: str) -> tuple[str, ...]:
        """git options that hold it to the addresses checked here; FetchError when they are refused."""
        if url.startswith("file:"):
            return ()
        try:
            addresses = await check_url_destination(url, self.destinations, asyncio.get_running_loop().getaddrinfo,
                                                    what="repository URL")
        except UrlPolicyError as exc:
            log.warning("refused to fetch %s: %s", url, exc.message)
            raise FetchError(exc.message) from None
        if self.destinations.dev:
            return ()
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        resolve = f"{parts.hostname}:{port}:{','.join(f'[{a}]' if ':' in a else a for a in addresses)}"
        return ("-c", f"http.curloptResolve={resolve}", "-c", "http.followRedirects=false")

    async def fetch(self, spec: RepoSpec, dest: Path) -> Checkout:
        """Clone ``spec.repo_url`` into ``dest`` (which must not exist) and check out ``spec.ref``."""
        if spec.provider not in ("git", "gh"):
            raise FetchError(f"provider {spec.provider} cannot be fetched with git here")
        if _SHELL_CHARS.search(spec.repo_url) or spec.repo_url.startswith("-"):
            raise FetchError("the repository URL contains characters that are not allowed")
        if spec.repo_url.startswith("file:") and not self.allow_file:
            raise FetchError("file:// repositories are only allowed in development mode (--dev)")
        pins = await self._pins(spec.repo_url)
        try:
            await self._git("clone", "--quiet", "--no-checkout", "--", spec.repo_url, str(dest), pins=pins)
        except procs.ProcessError as exc:
            if self.destinations.dev:
                raise FetchError(f"could not clone {spec.repo_url}: {_last(exc)}") from None
            # git's own words would tell a closed port from a silent one; they go to the log only.
            log.warning("clone of %s failed: %s", spec.repo_url, _last(exc))
            raise FetchError(
                f"could not clone {spec.repo_url}: the repository does not exist, is not public, "
                "or its host did not answer"
            ) from None
        commit = await self._resolve(spec, dest)
        try:
            await self._git("checkout", "--quiet", "--detach", commit, cwd=dest)
        except procs.ProcessError as exc:
            raise FetchError(f"could not check out {commit}: {_last(exc)}") from None
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
            f"Could not resolve ref for {spec.provider}:{spec.spec}. Double check your URL and that your repo is public."
        )


def _last(exc: procs.ProcessError) -> str:
    return exc.tail[-1] if exc.tail else str(exc)
