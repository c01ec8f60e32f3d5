"""The typed keys of everything the agent keeps on its ``web.Application``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from fedproto.clock import Clock
from fedproto.keys import KeyDir
from fedproto.replay import ReplayCache

if TYPE_CHECKING:
    from .backends.base import Backend
    from .brokertrust import BrokerTrust
    from .config import MemberConfig
    from .healthcheck import HealthService
    from .launches import LaunchService
    from .metrics import AgentMetrics
    from .statusad import StatusAdvertiser

CONFIG: web.AppKey[MemberConfig] = web.AppKey("config")
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Clock)
# The member's own keys, following keys/: `fedmember keys rotate` takes effect without a restart.
MEMBER_KEYS: web.AppKey[KeyDir] = web.AppKey("member_keys", KeyDir)
# The pinned broker keys (``.keys`` None until enrollment: signed routes then answer 401 not_enrolled).
BROKER_KEYS: web.AppKey[BrokerTrust] = web.AppKey("broker_keys")
REPLAY: web.AppKey[ReplayCache] = web.AppKey("replay", ReplayCache)
BACKEND: web.AppKey[Backend] = web.AppKey("backend")
METRICS: web.AppKey[AgentMetrics] = web.AppKey("metrics")
HEALTH: web.AppKey[HealthService] = web.AppKey("health")
LAUNCHES: web.AppKey[LaunchService] = web.AppKey("launches")
STATUS: web.AppKey[StatusAdvertiser] = web.AppKey("status")

# Per request: what the auth middleware verified.
REQUEST_CLAIMS: web.RequestKey[dict[str, Any]] = web.RequestKey("claims", dict)
REQUEST_BODY: web.RequestKey[bytes] = web.RequestKey("body", bytes)
