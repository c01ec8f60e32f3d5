"""The ``fedbroker`` command line: argument parsing and dispatch; the work lives in small modules.

Exit status: 0 on success, 1 when the broker or the config refused, 2 for usage errors.
JSON output (``--json``) is stable: ``members list`` prints the ``GET /api/v1/members``
object (``{"revision": N, "members": [MemberRecord, ...]}``), ``members show`` and the
state actions print the member record, ``members remove`` prints
``{"id", "state": "retired", "removed": true}`` and ``enroll-token create --json``
prints the ``POST /api/v1/enroll-tokens`` answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from ..adminclient import AdminClient, AdminClientError
from ..config import CONFIG_NAME, BrokerConfig, ConfigError
from ..demo import command as democmd
from ..registry.migrations import SchemaBehind
from ..registry.store import ADMIN_SCOPES
from . import datasetscmd, keyscmd, routecmd

MEMBER_ACTIONS = ("approve", "drain", "undrain", "disable")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d`` as seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def default_config_path() -> Path:
    return Path(os.environ.get("FEDBROKER_CONFIG", CONFIG_NAME))


def dev_from_env() -> bool:
    return os.environ.get("FEDERATION_DEV", "") in ("1", "true", "yes")


# -- init and serve -----------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    from ..initdir import init_broker_dir

    values: dict[str, Any] = {}
    for option in ("broker_id", "public_url", "db_url"):
        if getattr(args, option):
            values[option] = getattr(args, option)
    path, secret = init_broker_dir(Path(args.dir), values)
    print(f"wrote {path} and {path.parent / 'keys'}/")
    print("the admin token is shown only now; keep it in a secret store")
    print(f"admin token: {secret}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import configure_logging, run

    config = BrokerConfig.load(Path(args.config) if args.config else default_config_path())
    overrides: dict[str, Any] = {"dev": config.dev or args.dev or dev_from_env()}
    for option in ("host", "port", "mode"):
        if getattr(args, option) is not None:
            overrides[option] = getattr(args, option)
    if args.log_level is not None:
        overrides["logging"] = {**config.logging.model_dump(), "level": args.log_level}
    config = BrokerConfig.model_validate({**config.model_dump(), **overrides, "base_dir": config.base_dir})
    configure_logging(config.logging)
    run(config)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the registry's schema to this broker's version: the step before rolling out a new broker."""
    import asyncio

    from fedproto.clock import SystemClock

    from ..registry.db import create_engine
    from ..registry.migrations import MIGRATIONS, current_version
    from ..registry.store import RegistryStore

    config = BrokerConfig.load(Path(args.config) if args.config else default_config_path())
    newest = MIGRATIONS[-1].version

    async def version() -> int:
        engine = create_engine(config.resolved_db_url)
        try:
            async with engine.connect() as conn:
                return await current_version(conn)
        finally:
            await engine.dispose()

    async def upgrade() -> None:
        store = await RegistryStore.open(config.resolved_db_url, SystemClock(), upgrade=True)
        await store.close()

    before = asyncio.run(version())
    if args.check:
        if before < newest:
            raise CliError(f"registry schema version {before} is behind this broker's {newest}: run `fedbroker migrate`")
        print(f"registry schema is at version {before}")
        return 0
    asyncio.run(upgrade())
    print(f"registry schema version {before} -> {newest}" if before != newest else f"registry schema already at version {newest}")
    return 0


# -- admin commands ------------------------------------------------------------------

def admin_client(args: argparse.Namespace) -> AdminClient:
    url = args.url or os.environ.get("FEDBROKER_URL")
    token = args.token or os.environ.get("FEDBROKER_TOKEN")
    if not url:
        raise CliError("no broker URL: pass --url or set FEDBROKER_URL")
    if not token:
        raise CliError("no admin token: pass --token or set FEDBROKER_TOKEN")
    return AdminClient(url, token, ca_bundle=getattr(args, "ca_bundle", None))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def cmd_enroll_token_create(args: argparse.Namespace) -> int:
    answer = admin_client(args).create_enroll_token(args.name, args.ttl, args.auto_approve)
    if args.json:
        print_json(answer)
        return 0
    approval = "auto-approve" if answer["auto_approve"] else "needs approval"
    print(f"enrollment token {answer['id']} ({answer['name']}, {approval}), shown only now:")
    print(answer["token"])  # alone on the last line, for scripts
    return 0


def cmd_admin_token_create(args: argparse.Namespace) -> int:
    scopes = args.scope or list(ADMIN_SCOPES)
    answer = admin_client(args).create_admin_token(args.name, scopes, args.ttl)
    if args.json:
        print_json(answer)
        return 0
    print(f"admin token {answer['id']} ({answer['name']}: {', '.join(answer['scopes'])}), shown only now:")
    print(answer["token"])  # alone on the last line, for scripts
    return 0


def tokens_table(tokens: list[dict[str, Any]]) -> str:
    lines = [f"{'ID':<22} {'NAME':<24} {'STATE':<10} EXPIRES"]
    for t in tokens:
        state = "revoked" if t.get("revoked_at") else "used" if t.get("used_at") else "active"
        lines.append(f"{t['id']:<22} {t['name'][:24]:<24} {state:<10} {t['expires_at']:.0f}")
    return "\n".join(lines)


def cmd_token_list(args: argparse.Namespace) -> int:
    answer = admin_client(args).list_tokens(args.kind)
    print_json(answer) if args.json else print(tokens_table(answer["tokens"]))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    answer = admin_client(args).revoke_token(args.kind, args.id)
    if args.json:
        print_json(answer)
    elif answer.get("revoked_at") is None:
        print(f"token {args.id} was already used and cannot be revoked")
    else:
        print(f"token {args.id} revoked")
    return 0


def _token_admin(sub: Any, kind: str) -> None:
    """``list`` and ``revoke ID`` for one kind of token (``admin-tokens`` or ``enroll-tokens``)."""
    listing = sub.add_parser("list", help="list tokens (ids, names, state; never secrets)")
    _admin_options(listing)
    listing.set_defaults(func=cmd_token_list, kind=kind)
    revoke = sub.add_parser("revoke", help="revoke a token by id; it stops working at once")
    revoke.add_argument("id")
    _admin_options(revoke)
    revoke.set_defaults(func=cmd_token_revoke, kind=kind)


def _age(at: float | None, now: float | None) -> str:
    if at is None or now is None:
        return "never"
    seconds = max(0.0, now - at)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _load(health: dict[str, Any]) -> str:
    load = health.get("load")
    return "-" if load is None else f"{load:.0%}"


def members_table(members: list[dict[str, Any]], health: dict[str, Any] | None = None, now: float | None = None) -> str:
    rows = [("ID", "STATE", "HEALTH", "LOAD", "LAST POLL", "WEIGHT", "REGION", "PUBLIC URL", "NAME / REASON")]
    for m in members:
        h = (health or {}).get(m["id"], {})
        region = (m.get("location") or {}).get("region") or "-"
        last = _age(h.get("last_poll_at"), now)
        why = h.get("reason") if m["state"] == "active" else None
        rows.append((m["id"], m["state"], h.get("state", "unknown"), _load(h), last, f"{m['weight']:g}", region,
                     m["public_url"], m["display_name"] + (f" ({why})" if why else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def member_details(m: dict[str, Any], health: dict[str, Any] | None = None) -> str:
    location = m.get("location") or {}
    h = health or {}
    capacity = h.get("capacity") or {}
    lines = [
        f"id:           {m['id']}",
        f"name:         {m['display_name']}",
        f"state:        {m['state']}",
        f"weight:       {m['weight']:g}",
        f"agent url:    {m['agent_url']}",
        f"public url:   {m['public_url']}",
        f"location:     {', '.join(f'{k}={v}' for k, v in location.items() if v is not None) or '-'}",
        f"datasets:     {', '.join(d['id'] for d in m.get('datasets', [])) or '-'}",
        f"labels:       {', '.join(f'{k}={v}' for k, v in m.get('labels', {}).items()) or '-'}",
        f"keys:         {', '.join(k.get('kid', '?') for k in m['jwks'].get('keys', []))}",
        f"health:       {h.get('state', 'unknown')}" + ("" if h.get("routable", True) else f" (takes no launches: {h.get('reason')})"),
        f"load:         {_load(h)}" + (f" ({capacity.get('used', 0)} used, {capacity.get('building', 0)} building "
                                         f"of {capacity.get('total', 0)})" if capacity else ""),
        f"last poll:    {_age(h.get('last_poll_at'), h.get('now'))}"
        + ("" if h.get("last_poll_ok") is None else (", ok" if h.get("last_poll_ok") else ", failed")),
        f"last failure: {h.get('last_error') or '-'}",
    ]
    return "\n".join(lines)


def cmd_members(args: argparse.Namespace) -> int:
    client = admin_client(args)
    if args.action == "list":
        answer = client.list_members()
        if args.json:
            print_json(answer)
        else:
            print(members_table(answer["members"], answer.get("health"), answer.get("now")))
        return 0
    if not args.id:
        raise CliError(f"members {args.action} needs a member ID")
    if args.action == "show":
        answer = client.get_member(args.id)
        health = client.member_health(args.id)
        print_json({**answer, "health": health}) if args.json else print(member_details(answer, health))
    elif args.action == "remove":
        answer = client.remove_member(args.id)
        print_json(answer) if args.json else print(f"member {args.id} retired and removed")
    else:
        answer = client.member_action(args.id, args.action)
        print_json(answer) if args.json else print(f"member {args.id} is now {answer['state']}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "rotate":
        kid = keyscmd.rotate(keyscmd.keys_dir_of(args, default_config_path))
        print(f"added broker key {kid}: the running broker publishes it now, and signs with it once every member")
        print("has fetched it (members refresh the broker's signed key set; watch `fedbroker keys status`),")
        print("then `fedbroker keys retire` removes the old key")
        return 0
    status = admin_client(args).broker_keys_status()
    if args.keys_command == "status":
        print_json(status) if args.json else print(keyscmd.status_text(status))
        return 0
    targets = [args.kid] if args.force and args.kid else keyscmd.retire_targets(status, args.kid)
    keyscmd.retire(keyscmd.keys_dir_of(args, default_config_path), targets)
    print(f"retired broker key(s) {', '.join(targets)}; members drop them at their next key refresh")
    return 0


# -- parser ------------------------------------------------------------------------------

def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="broker URL (default: $FEDBROKER_URL)")
    parser.add_argument("--token", help="admin token (default: $FEDBROKER_TOKEN)")
    parser.add_argument("--ca-bundle", help="PEM CA bundle to trust for https (default: $FEDERATION_CA_BUNDLE, "
                                            "else the system store)")
    parser.add_argument("--json", action="store_true", help="print stable JSON instead of text")


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"config file (default: $FEDBROKER_CONFIG or ./{CONFIG_NAME})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedbroker", description="The binder-federation broker.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_broker_commands(sub)
    _add_token_commands(sub)
    _add_member_and_key_commands(sub)
    routecmd.add_parser(sub)
    datasetscmd.add_parsers(sub, _admin_options, admin_client)
    democmd.add_parser(sub)
    return parser


def _add_broker_commands(sub: Any) -> None:
    """init, serve, migrate: commands on this machine's broker directory."""
    init = sub.add_parser("init", help="create a broker directory: config, keys, registry, admin token")
    init.add_argument("dir")
    init.add_argument("--broker-id", help="this broker's id")
    init.add_argument("--public-url", help="the URL users reach the broker at")
    init.add_argument("--db-url", help="registry database URL (default: SQLite next to the config)")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="run the broker")
    _config_option(serve)
    serve.add_argument("--dev", action="store_true", help="allow plain http to members on loopback")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--mode", choices=["relay", "redirect"])
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log level (overrides [logging] level in the config)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="migrate the registry's schema to this broker's version (back it up first)")
    _config_option(migrate)
    migrate.add_argument("--check", action="store_true", help="change nothing; exit 1 if the schema is behind")
    migrate.set_defaults(func=cmd_migrate)


def _add_token_commands(sub: Any) -> None:
    """enroll-token and admin-token, through the running broker."""
    tokens = sub.add_parser("enroll-token", help="one-time member enrollment tokens")
    tokens_sub = tokens.add_subparsers(dest="token_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token; it is printed alone on the last line")
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.add_argument("--ttl", type=parse_duration, default=86400.0, help="lifetime, e.g. 30m, 24h, 7d")
    create.add_argument("--auto-approve", action="store_true", help="the member starts active")
    _admin_options(create)
    create.set_defaults(func=cmd_enroll_token_create)
    _token_admin(tokens_sub, "enroll-tokens")

    admin_tokens = sub.add_parser("admin-token", help="more admin tokens (at most the caller's scopes)")
    admin_sub = admin_tokens.add_subparsers(dest="admin_token_command", required=True)
    make = admin_sub.add_parser("create", help="create a token; it is printed alone on the last line")
    make.add_argument("--name", required=True, help="who the token is for (shown beside its id)")
    make.add_argument("--scope", action="append", choices=list(ADMIN_SCOPES),
                      help="repeatable; default: all three")
    make.add_argument("--ttl", type=parse_duration, default=90 * 86400.0, help="lifetime, e.g. 12h, 90d")
    _admin_options(make)
    make.set_defaults(func=cmd_admin_token_create)
    _token_admin(admin_sub, "admin-tokens")


def _add_member_and_key_commands(sub: Any) -> None:
    """members (through the running broker) and the broker's keys."""
    members = sub.add_parser("members", help="list and manage members through the running broker")
    members.add_argument("action", choices=["list", "show", *MEMBER_ACTIONS, "remove"])
    members.add_argument("id", nargs="?")
    _admin_options(members)
    members.set_defaults(func=cmd_members)

    keys = sub.add_parser("keys", help="rotate the broker's signing key without an outage")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="add a key; the broker signs with it once every member pins it")
    _config_option(rotate)
    rotate.set_defaults(func=cmd_keys)
    status = keys_sub.add_parser("status", help="which key signs, and which members the next one waits for")
    _admin_options(status)
    status.set_defaults(func=cmd_keys)
    retire = keys_sub.add_parser("retire", help="remove old keys once the broker no longer signs with them")
    retire.add_argument("kid", nargs="?", help="the key to retire (default: every key older than the signing one)")
    _config_option(retire)
    retire.add_argument("--force", action="store_true", help="retire KID without asking the running broker")
    _admin_options(retire)
    retire.set_defaults(func=cmd_keys)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CliError, ConfigError, AdminClientError, SchemaBehind) as exc:
        print(f"fedbroker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`fedbroker members list | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 1
