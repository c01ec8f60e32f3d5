"""``fedbroker keys rotate|status|retire``: broker key rotation with no outage.

``rotate`` adds a key file to the broker's ``keys_dir`` (the running broker picks it up
within a second and publishes it); the broker signs with it only once every polled member
pins it (members refresh the broker's signed key set). ``status`` asks the running broker
which key signs and which members it still waits for. ``retire`` removes an old key file,
after the running broker confirms it no longer signs with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from fedproto.errors import KeyMaterialError
from fedproto.keys import KeyRing

from ..config import BrokerConfig, ConfigError


def keys_dir_of(args: argparse.Namespace, default_config: Callable[[], Path]) -> Path:
    config = BrokerConfig.load(Path(args.config) if args.config else default_config())
    return config.resolve(config.keys_dir)


def rotate(keys_dir: Path) -> str:
    """Write a new, newest key beside the others; return its kid."""
    try:
        grown = KeyRing.load(keys_dir).with_new_key()
    except KeyMaterialError as exc:
        raise ConfigError(exc.message) from None
    grown.save(keys_dir)
    return grown.signing_key.kid


def retire_targets(status: dict[str, Any], kid: str | None) -> list[str]:
    """The keys to retire: ``kid``, or every key older than the signing one; never the signing key."""
    signing = status["signing"]
    if kid == signing:
        raise ConfigError(f"{kid} is the key the broker signs with now; it cannot be retired "
                          f"(see `fedbroker keys status` for the members it waits for)")
    keys = status["keys"]  # newest first
    if kid is not None:
        if kid not in {k["kid"] for k in keys}:
            raise ConfigError(f"the broker has no key {kid!r}")
        return [kid]
    order = [k["kid"] for k in keys]
    older = order[order.index(signing) + 1:]
    if not older:
        newer = order[:order.index(signing)]
        hint = f"; it still waits for members to pin {', '.join(newer)}" if newer else ""
        raise ConfigError(f"no key older than the signing key {signing} to retire{hint}")
    return older


def retire(keys_dir: Path, kids: list[str]) -> None:
    ring = KeyRing.load(keys_dir)
    try:
        for kid in kids:
            ring = ring.without(kid)
    except KeyMaterialError as exc:
        raise ConfigError(exc.message) from None
    ring.save(keys_dir)


def status_text(status: dict[str, Any]) -> str:
    lines = []
    for key in status["keys"]:
        waiting = key["waiting_on"]
        state = "signing" if key["signing"] else ("published" if waiting else "published, pinned by every member")
        lines.append(f"{key['kid']}  {state}" + (f"  (not pinned yet by: {', '.join(waiting)})" if waiting else ""))
    return "\n".join(lines)
