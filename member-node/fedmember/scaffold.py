"""``fedmember init``: a new member directory with a commented ``member.toml`` and fresh keys.

The comments come from the config models' field descriptions, so the file a
site operator edits always documents every option the agent reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticUndefined

from fedproto.keys import KeyRing
from fedproto.member import MEMBER_ID_PATTERN

from .backends import backend_class, backend_kinds
from .config import CONFIG_NAME, DEFAULT_PORT, ConfigError, MemberSettings, atomic_write

HEADER = """\
# fedmember configuration (https://github.com/binder-federation). Relative paths are
# resolved against this file's directory. Private keys live in keys/ (mode 0600), the
# pinned broker keys in broker.jwks.json (written by `fedmember enroll`).
"""

LOCATION_EXAMPLE = """\
[member.location]
# Where this site is; the broker routes launches near their data and users.
# lat = 52.37
# lon = 4.90
# region = "eu-west"
# country = "NL"
"""

DATASETS_EXAMPLE = """\
# Datasets stored at this site, one table each:
# [[member.datasets]]
# id = "10.5281/zenodo.3242074"   # a DOI, URL or bucket path (or a prefix with prefix = true)
# prefix = false
# size_bytes = 1000000000
# mount_path = "/srv/data/zenodo-3242074"   # a read-only mount servers may see as data/<name>
"""

_SKIP = {"location", "datasets", "kind"}


def _default_id(directory: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")[:63].strip("-")
    return name or "member"


def _toml_line(name: str, value: Any) -> str:
    """``name = value`` for a plain value; a commented hint for tables TOML cannot put on one line."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return f"# {name}: a table; see the member README" if value else f"# {name} = {{}}"
    try:
        return tomli_w.dumps({name: value}).strip()
    except TypeError:
        return f"# {name} = {value!r}"


def model_lines(model: type[BaseModel], values: dict[str, Any]) -> list[str]:
    """Each field as ``# description`` and ``name = value``; fields without a value are commented out."""
    lines: list[str] = []
    for name, field in model.model_fields.items():
        if name in _SKIP:
            continue
        lines.append(f"# {field.description or name}")
        if name in values:
            lines.append(_toml_line(name, values[name]))
            continue
        default = field.get_default(call_default_factory=True)
        if default is PydanticUndefined or default is None:
            lines.append(f"# {name} =   (required)" if field.is_required() else f"# {name} = ")
        else:
            lines.append(_toml_line(name, TypeAdapter(field.annotation).dump_python(default, mode="json")))
    return lines


def render(kind: str, member_id: str, agent_url: str, public_url: str) -> str:
    member_values = {
        "id": member_id,
        "display_name": member_id,
        "agent_url": agent_url,
        "public_url": public_url,
        "port": DEFAULT_PORT,
    }
    parts = [HEADER, "[member]", *model_lines(MemberSettings, member_values), "", LOCATION_EXAMPLE, DATASETS_EXAMPLE]
    parts += ["[broker]", "# Filled in by `fedmember enroll BROKER_URL --token T`.", 'url = ""', 'id = ""', ""]
    parts += ["[backend]", f"kind = {_toml_line('k', kind)[4:]}"]
    try:
        parts += model_lines(backend_class(kind).Config, {})
    except ValueError:  # installed without its extra (kubernetes)
        parts.append("# (this backend's options are documented in the member README)")
    return "\n".join(parts) + "\n"


def init_member(
    directory: Path, kind: str, *, member_id: str | None = None, agent_url: str = "", public_url: str = "", force: bool = False
) -> Path:
    """Write ``DIR/member.toml`` and ``DIR/keys/``; refuse to overwrite a config unless ``force``."""
    if kind not in backend_kinds():
        raise ConfigError(f"unknown backend {kind!r}; choose one of {', '.join(backend_kinds())}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_NAME
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    member_id = member_id or _default_id(directory)
    if not re.match(MEMBER_ID_PATTERN, member_id):
        raise ConfigError(f"member id {member_id!r} must be a DNS label (a-z, 0-9, '-')")
    agent_url = agent_url or f"http://127.0.0.1:{DEFAULT_PORT}"
    public_url = public_url or "http://127.0.0.1"
    KeyRing.load_or_create(directory / "keys")
    atomic_write(path, render(kind, member_id, agent_url, public_url).encode())
    return path
