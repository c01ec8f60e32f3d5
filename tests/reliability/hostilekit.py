"""Real processes for the attack suite: a broker (``fedbroker serve``) and small hostile member agents.

Everything runs under one directory; :func:`leftovers` finds any process still running from it,
so each test module can assert that no attack left a process behind.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedbroker.adminclient import AdminClient
from fedbroker.demo.childproc import ChildProcess, free_port, sweep_processes_under
from fedbroker.demo.run import FEDBROKER, LISTENING, set_section
from fedbroker.initdir import init_broker_dir
from fedproto.clock import SystemClock
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import KeyRing
from fedproto.tokens import sign_request

AGENT_SCRIPT = Path(__file__).with_name("hostile_agent.py")


@dataclass
class BrokerProcess:
    """``fedbroker init`` + ``fedbroker serve`` in ``directory``, with the given config."""

    directory: Path
    top: dict[str, Any] = field(default_factory=dict)  # top-level broker.toml values (dev, ...)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    admin_token: str = ""
    child: ChildProcess | None = None

    def start(self) -> BrokerProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = self.directory / "broker"
        _path, self.admin_token = init_broker_dir(config, {"broker_id": "attacked", "public_url": self.url,
                                                           "port": port, **self.top})
        text = (config / "broker.toml").read_text()
        for section, values in self.sections.items():
            text = set_section(text, section, values)
        (config / "broker.toml").write_text(text)
        self.child = ChildProcess("broker", [*FEDBROKER, "serve", "--config", str(config / "broker.toml")],
                                  self.directory / "logs" / "broker.log")
        self.child.start()
        self.child.wait_for_line(LISTENING, timeout=60)
        return self

    def admin(self, token: str | None = None) -> AdminClient:
        return AdminClient(self.url, token or self.admin_token)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


@dataclass
class HostileAgent:
    """A lying member agent process (``hostile_agent.py``), enrolled with the broker like any member."""

    directory: Path
    member_id: str
    port: int = 0
    child: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lie(self, **mode: Any) -> None:
        (self.directory / "mode.json").write_text(json.dumps(mode))

    def start(self) -> HostileAgent:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        KeyRing.load_or_create(self.directory / "keys")
        (self.directory / "agent.json").write_text(json.dumps({"member_id": self.member_id, "public_url": self.url}))
        self.child = ChildProcess(self.member_id, [sys.executable, str(AGENT_SCRIPT), str(self.directory), str(self.port)],
                                  self.directory / "agent.log")
        self.child.start()
        self.child.wait_for_line("hostile agent", timeout=60)
        return self

    def enroll(self, broker: BrokerProcess) -> dict[str, Any]:
        """Enroll honestly (an auto-approved token, its own key): the member is then active."""
        token = broker.admin().create_enroll_token(f"hostile {self.member_id}", 600.0, True)["token"]
        keys = KeyRing.load(self.directory / "keys")
        body = json.dumps({"token": token, "member_id": self.member_id, "display_name": self.member_id,
                           "agent_url": self.url, "public_url": self.url, "jwks": keys.public_set().to_jwks()}).encode()
        signature = sign_request(keys.signing_key, issuer=self.member_id, audience=EnrollmentToken.parse(token).broker_kid,
                                 method="POST", path_qs="/api/v1/enroll", body=body, clock=SystemClock())
        request = urllib.request.Request(broker.url + "/api/v1/enroll", data=body, method="POST", headers={
            "Authorization": f"Bearer {signature}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    def launches(self) -> list[dict[str, Any]]:
        path = self.directory / "launches.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def leftovers(directory: Path) -> list[int]:
    """Processes still running from ``directory`` (killed, and returned so a test can fail on them)."""
    return sweep_processes_under(directory)
