"""``fedbroker init DIR``: a new broker directory with a commented config, keys, registry and admin token."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel

from fedproto.clock import Clock, SystemClock
from fedproto.keys import KeyRing

from .config import CONFIG_NAME, BrokerConfig, ConfigError
from .registry.adminauth import new_admin_secret
from .registry.store import ADMIN_SCOPES, RegistryStore

INIT_TOKEN_NAME = "init"


def _toml_line(key: str, value: Any) -> str:
    if value is None:
        return f"# {key} =   (unset)"
    # Every line: tomli_w writes a non-empty list over several lines.
    return "\n".join("# " + line for line in tomli_w.dumps({key: value}).strip().splitlines())


def _section_lines(model: type[BaseModel], values: dict[str, Any]) -> list[str]:
    """Every scalar option as a commented default with its help text; ``values`` are set for real."""
    lines: list[str] = []
    for name, info in model.model_fields.items():
        if info.exclude or isinstance(info.default_factory, type) and issubclass(info.default_factory, BaseModel):
            continue
        lines.append(f"# {info.description}")
        if name in values:
            lines.append(tomli_w.dumps({name: values[name]}).strip())
        else:
            default = info.get_default(call_default_factory=True)
            lines.append(_toml_line(name, default))
        lines.append("")
    return lines


def render_config(values: dict[str, Any]) -> str:
    """``broker.toml`` text: every option of BrokerConfig with its help, defaults commented out."""
    lines = ["# fedbroker configuration. Every option is shown with its default, commented out.", ""]
    lines += _section_lines(BrokerConfig, values)
    for name, info in BrokerConfig.model_fields.items():
        factory = info.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            lines += [f"[{name}]", f"# {factory.__doc__.strip() if factory.__doc__ else name}", ""]
            lines += _section_lines(factory, {})
    return "\n".join(lines).rstrip() + "\n"


def _restrict_sqlite_file(url: str) -> None:
    # Only hashes are stored, but the registry is still the broker's trust root: owner-only.
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and Path(url[len(prefix):]).exists():
        os.chmod(url[len(prefix):], 0o600)


async def _create_registry(config: BrokerConfig, clock: Clock) -> str:
    store = await RegistryStore.open(config.resolved_db_url, clock)
    try:
        secret = new_admin_secret()
        async with store.write() as tx:
            row = await tx.add_admin_token(secret=secret, name=INIT_TOKEN_NAME, scopes=list(ADMIN_SCOPES),
                                           ttl=config.admin_token_ttl_days * 86400)
            await tx.audit("cli:init", "admin_token.create", row.id,
                           {"name": row.name, "scopes": sorted(row.scopes), "expires_at": row.expires_at})
        return secret
    finally:
        await store.close()


def init_broker_dir(directory: Path, values: dict[str, Any], clock: Clock | None = None) -> tuple[Path, str]:
    """:func:`init_broker` for synchronous callers (the CLI)."""
    return asyncio.run(init_broker(directory, values, clock))


async def init_broker(directory: Path, values: dict[str, Any], clock: Clock | None = None) -> tuple[Path, str]:
    """Create the broker directory; return the config path and the new admin token.

    Refuses to touch a directory that already has a config: re-running ``init``
    must never replace keys or a registry that members already trust.
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path} already exists; refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    text = render_config(values)
    config = BrokerConfig.model_validate({**values, "base_dir": directory.resolve()})
    KeyRing.load_or_create(config.resolve(config.keys_dir))
    secret = await _create_registry(config, clock or SystemClock())
    _restrict_sqlite_file(config.resolved_db_url)
    path.write_text(text)  # last: a failed init leaves no config, so it can simply be re-run
    BrokerConfig.load(path)  # the written file must load back
    return path, secret
