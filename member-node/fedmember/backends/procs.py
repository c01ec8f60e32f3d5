"""Child processes of the local backend: run with a timeout, stream their lines, stop them.

Every child starts in a new session (its own process group), so stopping it
also stops whatever it started (pip's builds, a kernel), and argv is always a
list: nothing here goes through a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

MAX_LINE = 4096
TAIL_LINES = 20


class ProcessError(Exception):
    """A child that failed or ran out of time; ``tail`` holds its last output lines."""

    def __init__(self, message: str, tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tail = list(tail)


async def terminate(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds; "already gone" is done."""
    if proc.returncode is not None:
        return
    try:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            _killpg(proc, sig)
            try:
                await asyncio.wait_for(proc.wait(), wait)
                return
            except TimeoutError:
                continue
    except asyncio.CancelledError:
        _killpg(proc, signal.SIGKILL)  # cancelled mid-way: never leave the child running
        raise


def _killpg(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def spawn(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None, output: int | None = None
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session; stdout and stderr merged into ``output`` (a pipe by default)."""
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if output is None else output,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        limit=MAX_LINE * 4,
    )


async def stream_lines(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "",
) -> AsyncIterator[str]:
    """Yield the child's output lines; raise :class:`ProcessError` on failure or timeout.

    ``name`` is what messages call the child (default: ``argv[0]``'s file name; a
    sandboxed pip is better called "pip" than "bwrap"). Leaving the iteration
    early (cancel, timeout, ``aclose``) stops the child.
    """
    name = name or Path(argv[0]).name
    proc = await spawn(argv, cwd=cwd, env=env)
    assert proc.stdout is not None
    tail: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ProcessError(f"{name} took longer than {timeout:g} s", tail)
            try:
                raw = await asyncio.wait_for(proc.stdout.readline(), remaining)
            except TimeoutError:
                continue
            except ValueError:  # a line longer than the buffer: skip it rather than fail the build
                continue
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip()[:MAX_LINE]
            tail = (tail + [line])[-TAIL_LINES:]
            yield line
        try:
            returncode = await asyncio.wait_for(proc.wait(), max(0.1, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            raise ProcessError(f"{name} took longer than {timeout:g} s", tail) from None
        if returncode != 0:
            raise ProcessError(f"{name} exited with status {returncode}", tail)
    finally:
        await terminate(proc, grace=2.0)


async def run(
    argv: Sequence[str], *, timeout: float, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Run to completion and return the output lines; :class:`ProcessError` on failure."""
    return [line async for line in stream_lines(argv, timeout=timeout, cwd=cwd, env=env)]
