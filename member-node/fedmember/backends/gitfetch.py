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
from fedproto.tls import git_env, is_git_infrastructure_error
from fedproto.urlpolicy import AddressPolicy, UrlPolicyError, check_url_destination

from . import procs

_COMMIT = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
# Legal in a URL but never needed for a repository, and the stuff of shell injection
# should the URL ever reach a shell (a hook, a credential helper): refuse them outright.
_SHELL_CHARS = re.compile(r"[;|&$`<>(){}\\\s]")


log = logging.getLogger(__name__)
NOT_FOUND_HINT = "Double check your URL and that your repo is public."


class FetchError(Exception):
    """The repository or ref could not be fetched; the message is safe to show users.

    ``status_code`` is what the launch fails with: 404 when the repository or ref is the
    problem, 503 when git could not reach the server (TLS, DNS, connection): that is the
    member's or the network's trouble, so the broker fails over instead of blaming the repo.
    """

    def __init__(self, message: str, status_code: int = 404) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Checkout:
    """A working tree at a resolved commit."""

    path: Path
    commit: str


class GitFetcher:
    """Clones repositories for launches."""

    def __init__(self, *, git: str = "git", timeout: float = 300.0, allow_file: bool = False,
                 destinations: AddressPolicy | None = None, ca_bundle: str | None = None) -> None:
        self.git = git
        self.timeout = timeout
        self.allow_file = allow_file
        # Development mode (allow_file) fetches from anywhere, loopback included; else public hosts only.
        self.destinations = destinations or AddressPolicy.of(dev=allow_file)
        self.ca_bundle = ca_bundle

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="true",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_ALLOW_PROTOCOL="https:http:git" + (":file" if self.allow_file else ""),
            GIT_PROTOCOL_FROM_USER="0",
        )
        # The member's one CA setting ([member] ca_bundle): git reads neither it nor SSL_CERT_FILE.
        env.update(git_env(self.ca_bundle))
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

    async def check_remote(self, spec: RepoSpec) -> None:
        """Raise :class:`FetchError` unless the repository answers and has the ref (``git ls-remote``).

        For backends that launch a prebuilt image without cloning (jupyterhub): a repository
        that does not exist must never end in a ready, empty server. A commit id cannot be
        listed by ls-remote, so for one only the repository itself is checked.
        """
        self._check_url(spec)
        pins = await self._pins(spec.repo_url)  # the same destination rule as a clone (SSRF)
        try:
            lines = await self._git("ls-remote", "--", spec.repo_url, pins=pins)
        except procs.ProcessError as exc:
            reason = _first_meaningful(exc)
            status = 503 if is_git_infrastructure_error(reason) else 404
            if not self.destinations.dev:
                log.warning("ls-remote of %s failed: %s", spec.repo_url, reason)
                reason = ("its host could not be reached over a trusted connection (this member's trouble)"
                          if status == 503 else "the repository does not exist or is not public")
            raise FetchError(f"could not reach {spec.repo_url}: {reason}", status) from None
        refs = {line.split("\t", 1)[1] for line in lines if "\t" in line}
        if _COMMIT.match(spec.ref) or spec.ref == "HEAD":
            return
        if not {f"refs/heads/{spec.ref}", f"refs/tags/{spec.ref}", spec.ref} & refs:
            raise FetchError(
                f"Could not resolve ref for {spec.provider}:{spec.spec}. {NOT_FOUND_HINT}"
            )

    def _check_url(self, spec: RepoSpec) -> None:
        if _SHELL_CHARS.search(spec.repo_url) or spec.repo_url.startswith("-"):
            raise FetchError("the repository URL contains characters that are not allowed")
        if spec.repo_url.startswith("file:") and not self.allow_file:
            raise FetchError("file:// repositories are only allowed in development mode (--dev)")

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
            reason = _first_meaningful(exc)
            # Transport trouble (TLS, DNS, connection) is the member's or the network's, not the
            # repository's: 503, so the broker tries another member. Destinations were checked
            # before git ran (no private addresses outside the allow-list), so this says nothing
            # about the site's own network.
            status = 503 if is_git_infrastructure_error(reason) else 404
            if self.destinations.dev:
                hint = f". {NOT_FOUND_HINT}" if status == 404 else ""
                raise FetchError(f"could not clone {spec.repo_url}: {reason}{hint}", status) from None
            # git's own words would tell a closed port from a silent one; they go to the log only.
            log.warning("clone of %s failed: %s", spec.repo_url, reason)
            if status == 503:
                raise FetchError(f"could not clone {spec.repo_url}: its host could not be reached over a trusted "
                                 "connection (this member's trouble; see its log)", status) from None
            raise FetchError(
                f"could not clone {spec.repo_url}: the repository does not exist, is not public, "
                f"or its host did not answer. {NOT_FOUND_HINT}"
            ) from None
        commit = await self._resolve(spec, dest)
        try:
            await self._git("checkout", "--quiet", "--detach", commit, cwd=dest)
        except procs.ProcessError as exc:
            raise FetchError(f"could not check out {commit}: {_first_meaningful(exc)}") from None
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
