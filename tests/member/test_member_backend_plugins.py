"""A backend from another package: found by its entry point, configured, launched through the agent.

The package is written to a temporary directory with its own ``.dist-info`` (what pip
would install), so nothing in this project names it: the agent finds it only through the
``binder_federation.backends`` entry point group.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agentkit import Signer, launch_body, member_config, post_launch, read_events

from fedmember.app import make_app
from fedmember.backends import BUILTIN_BACKENDS, ENTRY_POINT_GROUP, backend_class, backend_kinds
from fedproto.keys import KeyRing

PLUGIN = '''
"""A third-party backend: answers every launch with a server URL made from its own setting."""
from typing import AsyncIterator, Literal
from pydantic import Field
from fedmember.backends.base import Backend, BackendConfig
from fedproto.launch import LaunchEvent
from fedproto.status import Capacity, HealthCheck


class EchoConfig(BackendConfig):
    kind: Literal["echo"] = "echo"
    server_base: str = Field(default="http://127.0.0.1:9/", description="Where the pretend servers are.")


class EchoBackend(Backend):
    kind = "echo"
    providers = ("gh",)
    Config = EchoConfig

    async def launch(self, request, repo) -> AsyncIterator[LaunchEvent]:
        yield LaunchEvent(phase="launching", message=f"echo launching {repo.key} at {repo.ref}\\n")
        yield LaunchEvent(phase="ready", url=self.config.server_base + repo.repo + "/", token="echo-token")

    async def stop_server(self, launch_id):
        return False

    async def health(self):
        return [HealthCheck(service="Echo", ok=True)]

    async def capacity(self):
        return Capacity(total=1, used=0)


class NotABackend:
    pass
'''


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``echo_backend`` and its dist-info (entry points ``echo`` and ``bogus``) on ``sys.path``."""
    site = tmp_path / "site"
    (site / "echo_backend").mkdir(parents=True)
    (site / "echo_backend" / "__init__.py").write_text(PLUGIN)
    info = site / "echo_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\necho = echo_backend:EchoBackend\nbogus = echo_backend:NotABackend\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtin_backends_are_the_projects_own_entry_points() -> None:
    # The fallback table and pyproject.toml's entry points must name the same classes.
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"][ENTRY_POINT_GROUP] == BUILTIN_BACKENDS


def test_an_unknown_or_broken_backend_is_a_clear_error(plugin_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend kind 'nosuch'; installed: local, .*echo"):
        backend_class("nosuch")
    with pytest.raises(ValueError, match="is not a fedmember.backends.base.Backend"):
        backend_class("bogus")


def test_fedmember_init_offers_and_documents_an_installed_backend(plugin_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    target = tmp_path / "echo-site"
    run = subprocess.run([str(Path(sys.executable).parent / "fedmember"), "init", str(target), "--backend", "echo"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    written = (target / "member.toml").read_text()
    assert 'kind = "echo"' in written and "server_base" in written and "Where the pretend servers are." in written


async def test_a_third_party_backend_launches_through_the_agent(
    plugin_path: Path, tmp_path: Path, aiohttp_client: Any, broker_ring: KeyRing, signer: Signer
) -> None:
    assert "echo" in backend_kinds()
    config = member_config(tmp_path, backend={"kind": "echo", "server_base": "http://127.0.0.1:7/srv/"})
    client = await aiohttp_client(make_app(config, broker_keys=broker_ring.public_set()))
    resp = await post_launch(client, signer, launch_body(spec="org/repo/v1"))
    events = await read_events(resp)
    assert events[0]["message"] == "echo launching gh:org/repo at v1\n"  # handed the parsed spec
    assert events[-1] == {"phase": "ready", "message": "", "url": "http://127.0.0.1:7/srv/org/repo/", "token": "echo-token",
                          "launch_id": "launch-0001"}
    health = await (await client.get("/health")).json()
    assert "Echo" in [c["service"] for c in health["checks"]]
    # Its own settings are validated like a built-in's: an unknown key is a configuration error.
    with pytest.raises(ValueError, match="server_bsae"):
        member_config(tmp_path, backend={"kind": "echo", "server_bsae": "x"})

