"""Every piece of broker application state, as typed ``web.AppKey``s declared in one place.

Owners' types are imported for type checking only, so this module imports nothing
heavy and no import cycles form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from fedproto.clock import Clock

from .registry.brokerkeys import BrokerKeys
from .config import BrokerConfig
from .registry.snapshot import SnapshotHolder

if TYPE_CHECKING:
    from fedproto.replay import ReplayCache

    from .launch.memberclient import MemberClient
    from .launch.poller import Poller
    from .launch.redirect import TicketIssuer
    from .launch.canary import CanaryRunner
    from .launch.relay import LaunchRelay
    from .metrics import BrokerMetrics
    from .registry.admin import AdminService
    from .registry.enrollment import Enrollment
    from .registry.memberkeys import MemberKeys
    from .registry.service import Registry

    # health, routing and the front door
    from .routing.dispatcher import Dispatcher
    from .routing.health import HealthTable
    from .routing.ratelimit import ClientLimits
    from .routing.slo import SloTracker
    from .web.htmlpage import PageTemplates

CONFIG = web.AppKey("config", BrokerConfig)
CLOCK = web.AppKey("clock", Clock)
# The broker's keys, following keys_dir; the signing key waits for members to pin it.
KEYRING = web.AppKey("keyring", BrokerKeys)
SNAPSHOT = web.AppKey("snapshot", SnapshotHolder)

# Owners declare theirs below in the form
#   REGISTRY: web.AppKey[Registry] = web.AppKey("registry")

# Registry (registry.py): the store and the snapshot refresher.
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
# Replay cache for member-signed requests to the broker (enrollment, key rotation).
REPLAY: web.AppKey[ReplayCache] = web.AppKey("replay")
# The registry's services, built once with the registry (app-scoped, never per request).
ADMIN: web.AppKey[AdminService] = web.AppKey("admin")
ENROLLMENT: web.AppKey[Enrollment] = web.AppKey("enrollment")
MEMBER_KEYS: web.AppKey[MemberKeys] = web.AppKey("member_keys")

# Health, routing and the front door (fedbroker.app sets these up).
HEALTH: web.AppKey[HealthTable] = web.AppKey("health")
METRICS: web.AppKey[BrokerMetrics] = web.AppKey("metrics")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
MEMBER_CLIENT: web.AppKey[MemberClient] = web.AppKey("member_client")
RELAY: web.AppKey[LaunchRelay] = web.AppKey("relay")
POLLER: web.AppKey[Poller] = web.AppKey("poller")
# Redirect mode: signs the launch tickets browsers carry to agent-backed members.
TICKETS: web.AppKey[TicketIssuer] = web.AppKey("tickets")
# Per-client counters at the web edge: open streams, enrollment attempts (web/limits.py).
CLIENT_LIMITS: web.AppKey[ClientLimits] = web.AppKey("client_limits")
# Canaries (the runner, only while canary.repo is set) and the launch SLO.
CANARY: web.AppKey[CanaryRunner] = web.AppKey("canary")
SLO: web.AppKey[SloTracker] = web.AppKey("slo")

# The human pages (fedbroker.handlers.pages): templates read once at startup.
PAGES: web.AppKey[PageTemplates] = web.AppKey("pages")
