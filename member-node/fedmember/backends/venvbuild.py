"""Virtualenvs built from a repo's ``requirements.txt``, cached by the content that shapes them.

An environment's id is a hash of its requirements and of the layer it sits on
(the agent's interpreter and site-packages, pip's extra arguments), so two repos
with the same requirements share one environment and a second launch of a repo
does not rebuild. To keep builds fast, each env sees the agent's own
site-packages after its own (a ``.pth`` file), so jupyter-server is there
without installing it again; pip only installs what the repo adds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import site
import sys
from pathlib import Path
from typing import AsyncIterator, Sequence

from . import procs
from .sandbox import Jail, Mount, Sandbox, SandboxError

ENV_FILES = ("requirements.txt",)
MARKER = ".fedmember-complete"
LAYER_PTH = "_fedmember_agent_layer.pth"


class BuildError(Exception):
    """An environment that could not be built; ``tail`` holds the last output lines."""

    def __init__(self, message: str, tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tail = list(tail)


def _has_requirements(path: Path) -> bool:
    if not path.is_file():
        return False
    return any(ln.strip() and not ln.lstrip().startswith("#") for ln in path.read_text(errors="replace").splitlines())


def _pip_env() -> dict[str, str]:
    """pip's environment: a private HOME and TMPDIR, proxies; nothing else of the agent's."""
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")}
    env.update(PATH=f"/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin", HOME="/tmp", TMPDIR="/tmp")
    return env


class EnvBuilder:
    """Builds and finds environments under ``root``; one build per environment at a time."""

    def __init__(
        self,
        root: Path,
        *,
        python: str = "",
        pip_args: Sequence[str] = (),
        timeout: float = 900.0,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.root = root
        self.sandbox = sandbox or Sandbox(isolation="none")
        self.python = python or sys.executable
        self.pip_args = list(pip_args)
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._index_path = root / "repos.json"

    def _layer(self) -> str:
        return json.dumps([self.python, sys.version, site.getsitepackages(), self.pip_args])

    def env_id(self, checkout: Path) -> str:
        digest = hashlib.sha256(self._layer().encode())
        for name in ENV_FILES:
            path = checkout / name
            digest.update(f"\0{name}\0".encode())
            digest.update(path.read_bytes() if path.is_file() else b"<absent>")
        return "env-" + digest.hexdigest()[:16]

    def path(self, env_id: str) -> Path:
        return self.root / env_id

    def python_of(self, env_id: str) -> Path:
        return self.path(env_id) / "bin" / "python"

    def is_built(self, env_id: str) -> bool:
        return (self.path(env_id) / MARKER).exists()

    def is_building(self, env_id: str) -> bool:
        lock = self._locks.get(env_id)
        return lock is not None and lock.locked()

    async def build(self, env_id: str, checkout: Path, uid: int | None = None) -> AsyncIterator[str]:
        """Build ``env_id`` from ``checkout`` unless it exists; yield progress lines.

        pip runs in the sandbox as ``uid`` (it runs code from sdists). Concurrent
        builds of one env wait for the first and then reuse it.
        """
        lock = self._locks.setdefault(env_id, asyncio.Lock())
        if lock.locked():
            yield f"Waiting for environment {env_id}, which another launch is building"
        async with lock:
            if self.is_built(env_id):
                yield f"Using cached environment {env_id}"
                return
            try:
                async for line in self._create(env_id, checkout, uid):
                    yield line
            except BaseException:
                shutil.rmtree(self.path(env_id), ignore_errors=True)  # never leave a half-built env
                raise
            self.sandbox.take_back(self.path(env_id))
            (self.path(env_id) / MARKER).write_text("ok\n")

    async def _create(self, env_id: str, checkout: Path, uid: int | None) -> AsyncIterator[str]:
        env_dir = self.path(env_id)
        shutil.rmtree(env_dir, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        yield f"Creating virtualenv {env_id}"
        try:
            # venv itself runs no repository code: it runs as the agent, outside the sandbox.
            await procs.run([self.python, "-m", "venv", "--without-pip", str(env_dir)], timeout=120)
            self._add_layer(env_dir)
            if not _has_requirements(checkout / "requirements.txt"):
                yield "No requirements.txt entries; using the agent's packages"
                return
            self.sandbox.hand_over(env_dir, uid)
            jail = Jail(home=checkout, home_writable=False, mounts=(Mount(env_dir, str(env_dir), writable=True),), uid=uid)
            argv = self.sandbox.wrap(self.pip_argv(env_id, self.sandbox.home(jail) + "/requirements.txt"), jail)
            async for line in procs.stream_lines(argv, timeout=self.timeout, cwd=checkout, env=_pip_env(), name="pip"):
                yield line
        except procs.ProcessError as exc:
            raise BuildError(str(exc), exc.tail) from None
        except SandboxError as exc:
            raise BuildError(str(exc)) from None

    def pip_argv(self, env_id: str, requirements: str) -> list[str]:
        """pip, isolated from config files and ``PIP_*`` variables: only ``pip_args`` set the index."""
        return [
            self.python, "-m", "pip", "--python", str(self.python_of(env_id)), "install", "--isolated",
            "--no-input", "--no-cache-dir", "--disable-pip-version-check", "--no-color", "--progress-bar", "off",
            *self.pip_args, "-r", requirements,
        ]  # fmt: skip

    def _add_layer(self, env_dir: Path) -> None:
        site_dirs = sorted(env_dir.glob("lib/python*/site-packages"))
        if not site_dirs:
            raise BuildError(f"virtualenv {env_dir.name} has no site-packages")
        # addsitedir (not a bare path) so the agent's own .pth files are honoured too.
        lines = [f"import site; site.addsitedir({d!r})" for d in site.getsitepackages()]
        (site_dirs[0] / LAYER_PTH).write_text("\n".join(lines) + "\n")

    # -- which repos have an environment -------------------------------------
    def _read_index(self) -> dict[str, str]:
        try:
            data = json.loads(self._index_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def record(self, repo_key: str, env_id: str) -> None:
        """Remember that ``repo_key`` was built as ``env_id`` (survives agent restarts)."""
        index = self._read_index()
        if index.get(repo_key) == env_id:
            return
        index[repo_key] = env_id
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, sort_keys=True))
        tmp.replace(self._index_path)

    def built_repos(self) -> list[str]:
        """Repo keys whose recorded environment still exists."""
        return sorted(k for k, env_id in self._read_index().items() if self.is_built(env_id))
