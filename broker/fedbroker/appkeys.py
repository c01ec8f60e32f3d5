"""Every piece of broker application state, as typed ``web.AppKey``s declared in one place.

Owners' types are imported for type checking only, so this module imports nothing
heavy and no import cycles form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from fedproto.clock import Clock
from fedproto.keys import KeyRing

from .config import BrokerConfig
from .snapshot import SnapshotHolder

if TYPE_CHECKING:
    pass  # owners add: from .registry import Registry, etc.

CONFIG = web.AppKey("config", BrokerConfig)
CLOCK = web.AppKey("clock", Clock)
KEYRING = web.AppKey("keyring", KeyRing)
SNAPSHOT = web.AppKey("snapshot", SnapshotHolder)

# Owners declare theirs below in the form
#   REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
