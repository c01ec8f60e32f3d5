"""The ``fedmember`` command: ``init``, ``enroll``, ``keys`` and ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from fedproto.slowclients import guard_connections

from . import appkeys, memberkeys
from .app import make_app
from .backends import backend_kinds
from .config import ConfigError, MemberConfig, default_config_path, load_config, require_secure_url
from .enroll import EnrollError, enroll
from .scaffold import init_member

log = logging.getLogger("fedmember")


def dev_mode(flag: bool) -> bool:
    return flag or os.environ.get("FEDERATION_DEV", "") in ("1", "true", "yes")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedmember", description="The binder-federation member agent.")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="write DIR/member.toml and DIR/keys/")
    init.add_argument("directory", type=Path)
    init.add_argument("--backend", required=True, choices=list(backend_kinds()))
    init.add_argument("--id", dest="member_id", help="member id (a DNS label); default: from DIR's name")
    init.add_argument("--agent-url", default="", help="where the broker calls this agent")
    init.add_argument("--public-url", default="", help="where browsers reach this site's servers")
    init.add_argument("--force", action="store_true", help="overwrite an existing member.toml")
    enroll_cmd = sub.add_parser("enroll", help="enroll with a broker and pin its keys")
    enroll_cmd.add_argument("broker_url")
    enroll_cmd.add_argument("--token", required=True, help="the one-time enrollment token from the broker admin")
    enroll_cmd.add_argument("--config", type=Path, default=None)
    enroll_cmd.add_argument("--dev", action="store_true", help="allow plain http to a loopback broker")
    keys = sub.add_parser("keys", help="list, rotate or retire this member's own keys, live")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, text in (("list", "show the keys, newest (signing) first"),
                       ("rotate", "add a new signing key at the broker, then for the running agent (no restart)"),
                       ("retire", "drop old keys at the broker and locally (default: every key but the newest)")):
        cmd = keys_sub.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, default=None)
        if name == "retire":
            cmd.add_argument("kid", nargs="?", default=None, help="the key id to retire (default: all but the newest)")
    serve = sub.add_parser("serve", help="run the agent")
    serve.add_argument("--config", type=Path, default=None)
    serve.add_argument("--dev", action="store_true", help="allow plain http on loopback and file:// repos")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    path = init_member(
        args.directory, args.backend, member_id=args.member_id, agent_url=args.agent_url,
        public_url=args.public_url, force=args.force,
    )  # fmt: skip
    print(f"wrote {path} and {path.parent / 'keys'}/")
    print(f"next: edit it, then `fedmember enroll BROKER_URL --token T --config {path}`")
    if args.backend == "jupyterhub":
        # JupyterHub 5+ servers refuse ?token= in URLs; a launch lands the browser with one.
        print("in the hub's jupyterhub_config.py (JupyterHub 5 and later), so browsers land in JupyterLab:")
        print('  c.Spawner.environment = {"JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}')
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    config = load_config(args.config or default_config_path())
    require_secure_url(args.broker_url, dev=dev_mode(args.dev) or config.member.dev, what="broker URL")
    response = asyncio.run(enroll(config, args.broker_url, args.token))
    print(f"enrolled {response.member_id} with broker {response.broker_id}: state {response.state.value}")
    print(f"pinned {len(response.broker_jwks.get('keys', []))} broker key(s) in {config.broker_jwks_path}")
    return 0


def check_serve(config: MemberConfig, dev: bool) -> None:
    """Refuse what production must not do: plain http to or from the broker."""
    if config.broker.url:
        require_secure_url(config.broker.url, dev=dev, what="[broker] url")
    if not config.member.agent_url:
        raise ConfigError("[member] agent_url is not set: the broker needs it to call this agent")
    require_secure_url(config.member.agent_url, dev=dev, what="[member] agent_url")


class _GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose connections must send their first headers within ``header_timeout``
    (:mod:`fedproto.slowclients`, as the broker's)."""

    def __init__(self, app: web.Application, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    @property
    def server(self) -> Any:
        return guard_connections(super().server, self._header_timeout)


async def _serve(config: MemberConfig, dev: bool, host: str, port: int) -> None:
    ssl_context = config.server_ssl()
    app = make_app(config, dev=dev)
    if app[appkeys.BROKER_KEYS].keys is None:
        log.warning("not enrolled yet: every signed route answers 401 until `fedmember enroll`")
    # Browsers reach this agent too (ticketed /build, fronted servers): bound slow clients as the broker does.
    runner = _GuardedRunner(app, config.member.header_timeout, keepalive_timeout=config.member.keepalive_timeout,
                            access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"fedmember listening on {'https' if ssl_context else 'http'}://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: ending open streams and stopping servers")
        await runner.cleanup()


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config or default_config_path())
    dev = dev_mode(args.dev) or config.member.dev
    check_serve(config, dev)
    host = args.host or config.member.host
    port = config.member.port if args.port is None else args.port
    asyncio.run(_serve(config, dev, host, port))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config or default_config_path())
    if args.keys_command == "list":
        print("\n".join(memberkeys.describe(config)))
    elif args.keys_command == "rotate":
        key = asyncio.run(memberkeys.rotate(config))
        print(f"added key {key.kid}: the broker has it, and the running agent signs with it from its next status ad")
        print("next, once the broker shows this member healthy: `fedmember keys retire`")
    else:
        retired = asyncio.run(memberkeys.retire(config, args.kid))
        print("retired " + ", ".join(retired))
    return 0


COMMANDS = {"init": cmd_init, "enroll": cmd_enroll, "keys": cmd_keys, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("FEDMEMBER_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, EnrollError, memberkeys.KeyCommandError) as exc:
        print(f"fedmember: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return quiet_broken_pipe()


def quiet_broken_pipe() -> int:
    """The reader went away (``| head``): stop quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    return 1


if __name__ == "__main__":
    sys.exit(main())
