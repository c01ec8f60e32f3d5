"""A child process the demo runs (a broker or a member agent): its log, its announced URL, how it stops.

The demo and the end-to-end tests start real ``fedbroker serve`` and ``fedmember serve``
processes. Each child gets its own session, so a Ctrl-C in the terminal reaches only the
demo, which then stops the children in order (members first, so their notebook servers are
stopped by their own agents). On Linux each child also asks the kernel to SIGTERM it when
the demo dies, so even a killed demo leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

_PR_SET_PDEATHSIG = 1


class ChildError(Exception):
    """A child that did not start, or exited early; the message holds the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def python_module_command(module: str) -> list[str]:
    """Run a package's CLI with this interpreter, so children use the same environment as the demo."""
    return [sys.executable, "-m", module]


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent dies (Linux only).

    libc is loaded here, in the parent: loading a library between fork and exec in a process
    with threads can deadlock, a plain foreign call cannot.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_command(argv: Sequence[str], *, log: Path, timeout: float = 120.0, env: dict[str, str] | None = None) -> str:
    """Run a short command to completion; its output is appended to ``log`` and returned."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ChildError(f"{' '.join(argv[:4])} ... took longer than {timeout:g} s") from None
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise ChildError(f"{' '.join(argv[:4])} ... failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


class ChildProcess:
    """A long-running child whose stdout and stderr go to ``log``; started by :meth:`start`."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output begins in an appended log

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the child. Call it from a thread that lives as long as the child should:
        the kernel's parent-death signal fires when the starting *thread* ends."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True, preexec_fn=_parent_death_signal(),
            )

    def wait_for_line(self, prefix: str, timeout: float = 60.0) -> str:
        """The first log line starting with ``prefix`` (e.g. "fedbroker listening on"), once it appears."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith(prefix):
                    return line
            if not self.running():
                raise ChildError(f"{self.name} exited early:\n{log_tail(self.log)}")
            time.sleep(0.05)
        raise ChildError(f"{self.name} did not print {prefix!r} within {timeout:g} s:\n{log_tail(self.log)}")

    def output(self) -> str:
        """What this run of the child has written so far."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._log_start)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM and wait (the child stops its own children); SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would: the child gets no chance to clean up."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _belongs_under(pid: int, root: Path) -> bool:
    """Whether the process is a Python program started with a path inside ``root``, or a bubblewrap
    sandbox binding one.

    Agents (``--config``), brokers and unconfined jupyter-servers (``--ServerApp.root_dir=``) all
    are; a sandboxed jupyter-server's arguments name paths inside its sandbox, but the ``bwrap``
    that runs it binds the member's state directory, and killing it ends the whole sandbox (its
    pid namespace). A person's shell or editor open on a file there is not, and is left alone.
    """
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    inside = str(root) + os.sep
    program = Path(args[0]).name if args else ""
    ours = program.startswith("python") or program == "bwrap"
    return ours and any(a == str(root) or inside in a for a in args[1:])


def sweep_processes_under(directory: Path) -> list[int]:
    """SIGKILL every Python process started with a path inside ``directory`` (and every bubblewrap
    sandbox binding one); return their pids.

    A member agent stops its jupyter-servers itself, and a sandboxed one also ends when its agent
    dies (bubblewrap's ``--die-with-parent``); what can still be left is an unconfined server of a
    crashed agent (each runs in its own session), or a sandbox whose agent died before the sandbox
    had set that up. Servers are found by their root directory, sandboxes by the member directory
    they bind, agents and brokers by their ``--config`` path. Linux only (``/proc``); elsewhere
    nothing is swept.
    """
    root = directory.resolve()
    killed: list[int] = []
    if not Path("/proc").is_dir():
        return killed
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not _belongs_under(int(entry.name), root):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
    return killed
