"""A member agent the demo runs: ``fedmember init``, ``enroll`` and ``serve`` as child processes.

Everything goes through the ``fedmember`` command, exactly as a site operator would run it:
the broker package never imports the member package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .childproc import (
    ChildProcess,
    free_port,
    python_module_command,
    run_command,
    sweep_processes_under,
)
from .sites import DemoSite, member_toml

FEDMEMBER = python_module_command("fedmember.cli")
LISTENING = "fedmember listening on "


class MemberAgent:
    """One demo member: its directory, its agent URL and its ``fedmember serve`` process."""

    def __init__(self, site: DemoSite, directory: Path, port: int = 0) -> None:
        self.site = site
        self.directory = directory
        self.port = port or free_port()
        self.agent_url = f"http://127.0.0.1:{self.port}"
        self.process: ChildProcess | None = None
        self.restarts = 0

    @property
    def member_id(self) -> str:
        return self.site.member_id

    @property
    def config_path(self) -> Path:
        return self.directory / "member.toml"

    @property
    def log_path(self) -> Path:
        return self.directory / "agent.log"

    def init(self, dataset_dir: Path | None) -> None:
        """``fedmember init`` (keys and a commented config), then the demo's own settings."""
        if not self.config_path.exists():
            run_command([*FEDMEMBER, "init", str(self.directory), "--backend", "local", "--id", self.member_id,
                         "--agent-url", self.agent_url, "--public-url", self.agent_url],
                        log=self.directory.parent / f"{self.member_id}-setup.log")
        self.config_path.write_text(member_toml(self.site, self.agent_url, self.port, dataset_dir))

    def enroll(self, broker_url: str, token: str) -> str:
        """``fedmember enroll``: proof of key possession; pins the broker's keys beside the config."""
        return run_command([*FEDMEMBER, "enroll", broker_url, "--token", token, "--config", str(self.config_path),
                            "--dev"], log=self.directory.parent / f"{self.member_id}-setup.log")

    def start(self) -> None:
        """``fedmember serve --dev`` in the background; :meth:`wait_started` waits for its URL."""
        self.process = ChildProcess(
            f"member {self.member_id}", [*FEDMEMBER, "serve", "--config", str(self.config_path), "--dev"],
            self.log_path, env={"FEDERATION_DEV": "1"},
        )
        self.process.start()

    def wait_started(self, timeout: float = 60.0) -> None:
        assert self.process is not None, "start() first"
        self.process.wait_for_line(LISTENING, timeout)

    def stop(self) -> int | None:
        """SIGTERM: the agent stops its jupyter-servers itself; anything left is swept."""
        code = self.process.stop() if self.process is not None else None
        sweep_processes_under(self.directory)
        return code

    def kill(self) -> list[int]:
        """SIGKILL the agent as a crash would, then sweep the notebook servers it left running."""
        if self.process is not None:
            self.process.kill()
        return sweep_processes_under(self.directory)

    def restart(self) -> None:
        """Start the same agent again on the same port (it is enrolled already)."""
        if self.process is not None and self.process.running():
            self.stop()
        self.restarts += 1
        self.start()
        self.wait_started()

    def describe(self) -> dict[str, Any]:
        """This member as ``demo.json`` lists it."""
        return {
            "id": self.member_id,
            "display_name": self.site.display_name,
            "agent_url": self.agent_url,
            "pid": self.process.pid if self.process is not None else None,
            "config": str(self.config_path),
            "log": str(self.log_path),
            "location": self.site.location(),
            "capacity": self.site.capacity,
            "stores_dataset": self.site.stores_dataset,
        }
