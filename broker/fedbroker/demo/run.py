"""The demo federation: a broker and three member agents on 127.0.0.1, started, watched and stopped.

:class:`DemoFederation` is used by ``fedbroker demo`` and by the end-to-end tests. It runs
the same commands an operator would: ``fedbroker init`` (in-process), ``fedbroker serve``,
an enrollment token per member through the admin API, ``fedmember init``/``enroll``/
``serve``; then it waits until ``/health`` says every member is routable. Development mode
is on throughout: the members are plain http on loopback and the repos are ``file://``.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..adminclient import AdminClient
from ..initdir import init_broker_dir
from .agent import MemberAgent
from .childproc import ChildError, ChildProcess, free_port, python_module_command
from .repos import CANARY_EXAMPLE, ExampleRepo, create_dataset, create_repo, create_repos
from .sites import SITES, DemoSite

FEDBROKER = python_module_command("fedbroker")
LISTENING = "fedbroker listening on "
DEMO_JSON = "demo.json"
# Quick enough that the status page shows a killed member within seconds, and a canary strip
# that fills while one watches (a canary a minute on each member, of the demo's canary repo).
DEMO_BROKER_SETTINGS: dict[str, dict[str, Any]] = {
    "health": {"interval": 2.0, "timeout": 2.0, "unhealthy_interval": 4.0},
    "canary": {"interval": 60.0, "retry_interval": 15.0, "timeout": 120.0},
}


class DemoError(Exception):
    """The demo could not start; the message says what failed and where its log is."""


def set_section(text: str, section: str, values: Mapping[str, Any]) -> str:
    """``broker.toml`` text with ``values`` set at the top of ``[section]`` (init writes them commented out)."""
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())  # JSON scalars are TOML scalars
    header = re.compile(rf"^\[{re.escape(section)}\]\n", re.MULTILINE)
    if not header.search(text):
        return text.rstrip("\n") + f"\n\n[{section}]\n{lines}"
    return header.sub(lambda m: m.group(0) + lines, text, count=1)


class DemoFederation:
    """A broker and member agents as child processes, all state under ``directory``."""

    def __init__(
        self,
        directory: Path,
        port: int = 8585,
        *,
        sites: Iterable[DemoSite] = SITES,
        broker_settings: Mapping[str, Mapping[str, Any]] | None = None,
        say: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.directory = directory.resolve()
        self.port = port or free_port()
        self.broker_url = f"http://127.0.0.1:{self.port}"
        self.settings = broker_settings if broker_settings is not None else DEMO_BROKER_SETTINGS
        self.say = say
        self.admin_token = ""
        self.broker: ChildProcess | None = None
        self.members: dict[str, MemberAgent] = {
            s.member_id: MemberAgent(s, self.directory / "members" / s.member_id) for s in sites
        }
        self.repos: list[ExampleRepo] = []
        self.canary_repo: ExampleRepo | None = None
        self.dataset_dir: Path | None = None
        self.extra_brokers: list[ChildProcess] = []
        # Launch links open the notebook in JupyterLab only where the servers have it.
        self.lab = importlib.util.find_spec("jupyterlab") is not None

    @property
    def broker_config(self) -> Path:
        return self.directory / "broker" / "broker.toml"

    # -- start --------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        """Everything up and every member routable, or :class:`DemoError` (call :meth:`stop` either way)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _check_port_free(self.port)
        _check_tools()
        self.say("creating example repositories and the demo dataset")
        self.repos = create_repos(self.directory / "repos")
        self.canary_repo = create_repo(self.directory / "repos", CANARY_EXAMPLE) if "canary" in self.settings else None
        self.dataset_dir = create_dataset(self.directory / "data")
        self.say(f"initialising the broker in {self.broker_config.parent}")
        self._init_broker()
        self.write_manifest()  # early: it also marks the directory as a demo's, for the next run
        self.broker = self._serve_broker(["--port", str(self.port)], "broker.log")
        self.say(f"broker listening on {self.broker_url}; enrolling {len(self.members)} members")
        self._each_member(self._enroll)
        # Started from this thread: a child dies with the thread that started it (PDEATHSIG).
        for member in self.members.values():
            member.start()
        for member in self.members.values():
            member.wait_started()
        self.say("waiting until every member answers the broker's health polls")
        self.wait_routable(len(self.members), timeout)
        self.write_manifest()

    def _init_broker(self) -> None:
        _path, self.admin_token = init_broker_dir(
            self.broker_config.parent, {"broker_id": "demo", "public_url": self.broker_url, "dev": True}
        )
        text = self.broker_config.read_text()
        for section, values in self.settings.items():
            if section == "canary" and "repo" not in values and self.canary_repo is not None:
                values = {"repo": f"git/{self.canary_repo.spec()}", **values}  # the demo's own canary repo
            text = set_section(text, section, values)
        self.broker_config.write_text(text)

    def _serve_broker(self, args: list[str], log_name: str) -> ChildProcess:
        child = ChildProcess("broker", [*FEDBROKER, "serve", "--config", str(self.broker_config), "--dev", *args],
                             self.directory / "logs" / log_name)
        child.start()
        child.wait_for_line(LISTENING)
        return child

    def serve_extra_broker(self, *args: str) -> str:
        """Another ``fedbroker serve`` on the same registry (e.g. ``--mode redirect``); returns its URL."""
        child = self._serve_broker(["--port", "0", *args], f"broker-extra-{len(self.extra_brokers)}.log")
        self.extra_brokers.append(child)
        return child.wait_for_line(LISTENING).rsplit(" ", 1)[1]

    def _each_member(self, action: Callable[[MemberAgent], object]) -> None:
        # Each member's commands are slow-starting Python processes: run the members side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(self.members))) as pool:
            for future in [pool.submit(action, m) for m in self.members.values()]:
                future.result()

    def _enroll(self, member: MemberAgent) -> None:
        member.init(self.dataset_dir if member.site.stores_dataset else None)
        admin = AdminClient(self.broker_url, self.admin_token)
        token = admin.create_enroll_token(f"demo {member.member_id}", 3600.0, True)["token"]
        member.enroll(self.broker_url, token)

    # -- watching -------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The broker's ``/health`` report (it answers 503 with the same body when nothing is routable)."""
        try:
            with urllib.request.urlopen(f"{self.broker_url}/health", timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except (urllib.error.URLError, OSError) as exc:
            return {"ok": False, "checks": [{"members": [], "error": str(exc)}]}

    def routable(self) -> list[str]:
        return list(self.health()["checks"][0]["members"])

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.broker is not None and not self.broker.running():
                raise DemoError(f"the broker exited; see {self.broker.log}")
            if predicate():
                return
            time.sleep(0.2)
        raise DemoError(f"{what} not within {timeout:g} s; /health says {json.dumps(self.health())}")

    def wait_routable(self, count: int, timeout: float = 60.0) -> None:
        self.wait_until(lambda: len(self.routable()) >= count, timeout, f"{count} routable members")

    # -- failures, for tests and for trying the demo by hand --------------------------
    def kill_member(self, member_id: str) -> None:
        """SIGKILL a member's agent (a crash); its leftover notebook servers are swept."""
        self.members[member_id].kill()

    def restart_member(self, member_id: str, timeout: float = 60.0) -> None:
        """Start a killed or stopped member again and wait until the broker routes to it.

        Call it from the thread that called :meth:`start` (see :meth:`ChildProcess.start`).
        """
        self.members[member_id].restart()
        self.wait_until(lambda: member_id in self.routable(), timeout, f"member {member_id} routable again")
        self.write_manifest()

    # -- stop -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Members first (each stops its own notebook servers), then the brokers. Safe to call twice."""
        try:
            self._each_member(MemberAgent.stop)
        finally:
            for child in [*self.extra_brokers, *([self.broker] if self.broker else [])]:
                child.stop()

    def manifest(self) -> dict[str, Any]:
        """What ``demo.json`` holds, for scripts and tests."""
        return {
            "broker_url": self.broker_url,
            "status_url": f"{self.broker_url}/status",
            "admin_token": self.admin_token,
            "broker_config": str(self.broker_config),
            "broker_pid": self.broker.pid if self.broker else None,
            "directory": str(self.directory),
            "members": [m.describe() for m in self.members.values()],
            "repos": [{"name": r.name, "path": str(r.path), "spec": r.spec(), "data": list(r.data),
                       "launch_url": self.launch_url(r)} for r in self.repos],
        }

    def launch_url(self, repo: ExampleRepo) -> str:
        return self.broker_url + repo.launch_path(lab=self.lab)

    def write_manifest(self) -> Path:
        path = self.directory / DEMO_JSON
        path.write_text(json.dumps(self.manifest(), indent=2) + "\n")
        path.chmod(0o600)  # it holds the admin token
        return path


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(f"port {port} on 127.0.0.1 is in use; pass --port 0 for a free one") from None


def _check_tools() -> None:
    """What the local backend needs on this machine, checked before anything starts."""
    if shutil.which("git") is None:
        raise DemoError("the demo needs git (the members clone the example repositories with it)")
    if importlib.util.find_spec("jupyter_server") is None:
        raise DemoError("the demo needs jupyter-server: pip install 'binder-federation[local]' (or run `make demo`)")


def prepare_directory(directory: Path) -> None:
    """Reuse a previous demo's directory (its state is replaced); refuse any other non-empty one."""
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not (directory / DEMO_JSON).exists():
        raise DemoError(f"{directory} is not empty and holds no previous demo; choose an empty or new --dir")
    for name in ("broker", "members", "repos", "data", "logs", DEMO_JSON):
        target = directory / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


__all__ = ["ChildError", "DemoError", "DemoFederation", "prepare_directory", "set_section"]
