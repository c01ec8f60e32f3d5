"""Where a repository's code runs: a bubblewrap sandbox per launch, as an unprivileged user.

Repositories are hostile: ``pip`` runs code from sdists, a kernel runs anything.
Both run inside Debian's ``bwrap`` with new PID, IPC and UTS namespaces and a
filesystem made only of:

- the system's programs and libraries (``/usr`` and its links), read-only, and
  a handful of ``/etc`` files name resolution and TLS need (never all of ``/etc``);
- the Python the environments are built from and the agent's own environment
  (jupyter-server, JupyterLab), read-only, at their host paths;
- the launch's checkout as ``/home/jovyan`` (writable for a server, read-only
  for a build), its environment (read-only for a server), its datasets
  (read-only bind mounts: the kernel refuses writes), and a private ``/tmp``.

Nothing of the agent's config, keys or state and nothing of other launches is
mounted, and the new PID namespace hides every other process (``/proc/*/environ``).
When the agent runs as root, bwrap sets the mounts up as root and then
``setpriv`` drops to the launch's own uid (``uid_base`` + slot) with no
capabilities and ``no_new_privs`` before any repository code runs; ``prlimit``
caps each process's address space and the uid's process count. A non-root
agent's sandbox runs as the agent's uid in a user namespace (the process limit
then counts the agent's own processes too).

Not contained: the network. Servers must listen on the host's loopback, so a
sandbox shares the host's network namespace and has egress. ``isolation =
"none"`` runs everything as the agent, unconfined: only for trusted repositories.
"""

from __future__ import annotations

import logging
import os
import shutil
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Literal, Sequence

from ..config import ConfigError
from . import procs

log = logging.getLogger(__name__)

HOME = "/home/jovyan"
# /etc files a process needs for DNS, TLS and MIME types; the rest of /etc (an
# operator's config, keys) stays outside.
ETC_FILES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
    "/etc/localtime", "/etc/mime.types", "/etc/os-release", "/etc/debian_version", "/etc/ssl/certs", "/etc/ca-certificates", "/etc/pki/tls/certs",
)  # fmt: skip
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
Isolation = Literal["bubblewrap", "none"]


class SandboxError(ConfigError):
    """The sandbox cannot run here; the message says what to install or set (``fedmember serve`` prints it)."""


@dataclass(frozen=True)
class Mount:
    """A host path shown inside the sandbox at ``dest``."""

    source: Path
    dest: str
    writable: bool = False


@dataclass(frozen=True)
class Jail:
    """What one sandboxed process sees beyond the system and the Python runtime."""

    home: Path  # the checkout, shown as HOME and the working directory
    home_writable: bool = True
    mounts: tuple[Mount, ...] = ()
    uid: int | None = None  # the unprivileged uid it runs as; None keeps the agent's (non-root agents)


@dataclass(frozen=True)
class Limits:
    """Per-launch limits: each process's address space, and processes of the launch's uid."""

    memory_bytes: int = 0  # 0: unlimited
    processes: int = 0


def runtime_paths(pythons: Iterable[str]) -> list[Path]:
    """Read-only host directories the Python runtime needs: interpreter prefixes and site dirs."""
    candidates = {Path(sys.prefix), Path(sys.base_prefix), *(Path(d) for d in site.getsitepackages())}
    for python in pythons:
        candidates.add(Path(os.path.realpath(python)).parent.parent)
    resolved = {Path(os.path.realpath(p)) for p in candidates if p.exists()} | {p for p in candidates if p.exists()}
    return _outermost(p for p in resolved if not _under_any(p, SYSTEM_DIRS))


def _under_any(path: Path, roots: Iterable[str]) -> bool:
    return any(path == Path(r) or Path(r) in path.parents for r in roots)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    ordered = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if not any(k == path or k in path.parents for k in kept):
            kept.append(path)
    return sorted(kept)


def _system_args() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--perms", "0755", "--dir", "/etc"]
    for path in ETC_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _dirs_for(dests: Iterable[str]) -> list[str]:
    """``--dir`` for every ancestor of each mount point, world-traversable (bwrap's own are 0700)."""
    parents = {str(p) for dest in dests for p in PurePosixPath(dest).parents if str(p) != "/"}
    args: list[str] = []
    for parent in sorted(parents, key=lambda p: (p.count("/"), p)):
        if not _under_any(Path(parent), ("/usr", "/etc", "/proc", "/dev")):
            args += ["--perms", "0755", "--dir", parent]
    return args


def bwrap_argv(
    argv: Sequence[str], jail: Jail, *, runtime: Sequence[Path], limits: Limits, as_root: bool, bwrap: str = "bwrap"
) -> list[str]:
    """The whole command line that runs ``argv`` in ``jail`` (pure: no I/O)."""
    if as_root and not jail.uid:
        # bwrap keeps CAP_SETUID for setpriv: without the drop to a uid, repo code would keep it.
        raise SandboxError("a sandbox set up by root must run as an unprivileged uid")
    mounts = [Mount(p, str(p)) for p in runtime]
    mounts.append(Mount(jail.home, HOME, jail.home_writable))
    mounts += sorted(jail.mounts, key=lambda m: len(PurePosixPath(m.dest).parts))
    cmd = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"]
    if as_root:
        # Root sets the mounts up, then setpriv drops to the launch's uid before any repo code runs.
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        cmd += ["--unshare-user", "--disable-userns"]
    cmd += _system_args()
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    cmd += _dirs_for(m.dest for m in mounts)
    for mount in mounts:
        cmd += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.dest]
    cmd += ["--chdir", HOME, "--"]
    rlimits = ([f"--as={limits.memory_bytes}"] if limits.memory_bytes else []) + (
        [f"--nproc={limits.processes}"] if limits.processes else []
    )
    if rlimits:
        cmd += ["prlimit", *rlimits, "--"]
    if as_root:
        cmd += [
            "setpriv", f"--reuid={jail.uid}", f"--regid={jail.uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
        ]  # fmt: skip
    return cmd + list(argv)


@dataclass
class Sandbox:
    """Runs commands for one local backend, confined (``bubblewrap``) or not (``none``)."""

    isolation: Isolation = "bubblewrap"
    uid_base: int = 61000
    limits: Limits = field(default_factory=Limits)
    pythons: Sequence[str] = ()

    @property
    def confined(self) -> bool:
        return self.isolation == "bubblewrap"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def uid_for(self, slot: int) -> int | None:
        """The uid of the launch in ``slot``; None where the agent cannot switch users."""
        return self.uid_base + slot if self.confined and self.as_root else None

    def home(self, jail: Jail) -> str:
        """The checkout's path as the sandboxed process sees it."""
        return HOME if self.confined else str(jail.home)

    async def check(self, state: Path) -> None:
        """Fail at start, not at each launch: bwrap runs, and no mounted runtime path holds ``state``."""
        if not self.confined:
            log.warning("isolation = \"none\": repository code runs as the agent's user, unconfined")
            return
        for path in runtime_paths(self.pythons):
            if Path(os.path.realpath(state)) == path or path in Path(os.path.realpath(state)).parents:
                raise SandboxError(f"the agent's state directory {state} is inside {path}, which every sandbox sees")
        probe = state / "sandbox-probe"
        probe.mkdir(parents=True, exist_ok=True)
        try:
            await procs.run(self.wrap(["true"], Jail(home=probe, uid=self.uid_for(0))), timeout=30, cwd=probe)
        except procs.ProcessError as exc:
            detail = exc.tail[-1] if exc.tail else str(exc)
            raise SandboxError(f"the bubblewrap sandbox does not start here ({detail}); see the README's sandbox section") from None
        finally:
            shutil.rmtree(probe, ignore_errors=True)

    def wrap(self, argv: Sequence[str], jail: Jail) -> list[str]:
        if not self.confined:
            return list(argv)
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError(_MISSING)
        return bwrap_argv(argv, jail, runtime=runtime_paths(self.pythons), limits=self.limits, as_root=self.as_root, bwrap=bwrap)

    def hand_over(self, path: Path, uid: int | None) -> None:
        """Make ``path`` (recursively) owned by ``uid``, so the sandbox may write there."""
        if uid is None or not self.as_root:
            return
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, uid)
        os.lchown(path, uid, uid)

    def take_back(self, path: Path) -> None:
        """Give ``path`` back to the agent's user (a built environment, before others share it)."""
        if self.confined and self.as_root:
            self.hand_over(path, 0)


_MISSING = (
    "the local backend runs repositories in a bubblewrap sandbox, but `bwrap` is not installed: "
    "install Debian's `bubblewrap` package, or set `isolation = \"none\"` in [backend] "
    "to run repositories unconfined (trusted repositories only)"
)
