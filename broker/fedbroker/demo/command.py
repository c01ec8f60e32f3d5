"""``fedbroker demo``: start the demo federation, tell the person what to open, stop it all on Ctrl-C."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from .repos import DEMO_DATASET

if TYPE_CHECKING:
    from .run import DemoFederation

DEFAULT_PORT = 8585


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to ``fedbroker``'s subcommands."""
    p = subparsers.add_parser(
        "demo", help="run a broker and 3 local members on 127.0.0.1 (development mode)",
        description="Start a broker and three member agents (local backend) on 127.0.0.1 with example "
        "repositories and a dataset, print the links to open, and stop everything on Ctrl-C. "
        "Development mode is on: plain http on loopback and file:// repositories.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"broker port (default {DEFAULT_PORT}; 0: a free one)")
    p.add_argument("--dir", help="keep the demo's state and logs here (default: a temporary directory, removed on exit)")
    p.set_defaults(func=run)
    return p


def _member_lines(fed: DemoFederation) -> list[str]:
    lines = []
    for m in fed.members.values():
        s = m.site
        data = f"stores {DEMO_DATASET} (5 GiB)" if s.stores_dataset else "no datasets"
        lines.append(f"  {s.member_id:<9} {s.display_name:<22} {s.region:<13} {s.country}  "
                     f"capacity {s.capacity}  {data}  agent {m.agent_url}")
    return lines


def banner(fed: DemoFederation) -> str:
    """What a person needs: where to look, what to click, how to ask why, how to stop."""
    from .run import DEMO_JSON
    url = fed.broker_url
    dataset_repo = next((r for r in fed.repos if r.data), None)
    lines = [
        "",
        "binder-federation demo is running (development mode: plain http on 127.0.0.1 and file:// repositories)",
        "",
        f"  Home page:    {url}/",
        f"  Status page:  {url}/status",
        f"  Health:       {url}/health",
        "",
        "Members (local backend: each launch is a real jupyter-server on this machine):",
        *_member_lines(fed),
        "",
        "Launch an example repository (open a link in your browser):",
        *[f"  {r.name:<9} {fed.launch_url(r)}" for r in fed.repos],
    ]
    if dataset_repo is not None:
        lines += [
            "",
            f"The {dataset_repo.name!r} link asks for ?data={DEMO_DATASET}, so it lands on the member that stores it.",
            "Ask the broker why, without launching anything:",
            f"  {_fedbroker()} route git/{dataset_repo.spec()} --data {DEMO_DATASET} --explain --url {url}",
        ]
    lines += [
        "",
        "Admin commands (drain or undrain a member, list members):",
        f"  export FEDBROKER_URL={url} FEDBROKER_TOKEN={fed.admin_token}",
        f"  {_fedbroker()} members list",
        "",
        f"State and logs: {fed.directory} ({DEMO_JSON} lists everything)",
        "Press Ctrl-C to stop; the members and their notebook servers stop too.",
        "",
    ]
    return "\n".join(lines)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _watch(fed: DemoFederation, out: TextIO) -> None:
    """Wait for Ctrl-C or SIGTERM; say so if a process dies meanwhile."""
    from .run import DemoError

    reported: set[str] = set()
    while True:
        time.sleep(1.0)
        if fed.broker is not None and not fed.broker.running():
            raise DemoError(f"the broker exited; see {fed.broker.log}")
        for member in fed.members.values():
            process = member.process
            if process is not None and not process.running() and member.member_id not in reported:
                reported.add(member.member_id)
                print(f"member {member.member_id} exited; see {member.log_path}", file=out, flush=True)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Start, print, wait, stop. Exit status 0 after Ctrl-C, 1 when the demo could not start."""
    # Imported here: the registry and database modules would slow every other fedbroker command.
    from ..adminclient import AdminClientError
    from .childproc import ChildError
    from .run import DemoError, DemoFederation, prepare_directory

    temporary = args.dir is None
    directory = Path(args.dir or tempfile.mkdtemp(prefix="fedbroker-demo-"))
    say = lambda line: print(f"demo: {line}", file=out, flush=True)  # noqa: E731
    # SIGINT too: a shell that starts the demo in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    failed = False
    fed: DemoFederation | None = None
    try:
        prepare_directory(directory)
        fed = DemoFederation(directory, args.port, say=say)
        say("development mode (--dev) is on: plain http on loopback and file:// repositories are allowed")
        fed.start()
        print(banner(fed), file=out, flush=True)
        _watch(fed, out)
    except KeyboardInterrupt:
        say("stopping")
    except (DemoError, ChildError, AdminClientError, OSError) as exc:
        failed = True
        print(f"fedbroker demo: {exc}", file=sys.stderr)
    finally:
        # A second Ctrl-C must not cut the orderly stop short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if fed is not None:
            fed.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if temporary and not failed:
        shutil.rmtree(directory, ignore_errors=True)
    elif failed:
        print(f"fedbroker demo: logs are kept in {directory}", file=sys.stderr)
    say("stopped")
    return 1 if failed else 0


def _fedbroker() -> str:
    """How to run fedbroker from a shell: bare when it is on PATH, else the venv's own script
    (``make demo`` does not put .venv/bin on the user's PATH)."""
    script = Path(sys.executable).parent / "fedbroker"
    on_path = shutil.which("fedbroker")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "fedbroker"
    return str(script) if script.exists() else "fedbroker"
