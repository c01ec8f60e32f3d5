"""The member's status ad: what it tells the broker about itself, signed with its key."""

from __future__ import annotations

import secrets

from fedproto import PROTOCOL_VERSION, __version__
from fedproto.clock import Clock
from fedproto.keys import KeyDir
from fedproto.status import ImageSummary, RedirectTarget, StatusAd

from .backends.base import Backend
from .brokertrust import BrokerTrust
from .config import MemberConfig
from .healthcheck import HealthService


class StatusAdvertiser:
    """Builds and signs status ads; ``instance_id`` is new per process, ``generation`` counts ads."""

    def __init__(
        self, config: MemberConfig, backend: Backend, health: HealthService, keys: KeyDir, clock: Clock,
        trust: BrokerTrust | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.health = health
        self.keys = keys
        self.clock = clock
        self.trust = trust
        self.instance_id = secrets.token_hex(8)
        self.generation = 0

    def versions(self) -> dict[str, str]:
        return {"fedmember": __version__, "protocol": PROTOCOL_VERSION, **self.backend.versions()}

    async def current(self) -> StatusAd:
        checks = await self.health.checks()
        capacity = await self.backend.capacity()
        images = ImageSummary.of(await self.backend.images())
        self.generation += 1
        now = self.clock.now()
        member = self.config.member
        return StatusAd(
            member_id=member.id,
            instance_id=self.instance_id,
            generation=self.generation,
            issued_at=now,
            expires_at=now + member.status_ttl,
            healthy=HealthService.ok(checks),
            checks=checks,
            capacity=capacity,
            versions=self.versions(),
            providers=list(self.backend.providers),
            backend=self.backend.kind,
            public_url=member.public_url or None,
            datasets=member.datasets,
            location=member.location,
            images=images,
            redirect=self.redirect_target(),
            broker_kids=self.trust.kids if self.trust is not None else None,
        )

    def redirect_target(self) -> RedirectTarget | None:
        """The site's own BinderHub when browsers can use it, else the agent's ticket endpoint when public."""
        hub = self.backend.browser_launch_url()
        if hub:
            return RedirectTarget(kind="binderhub", url=hub)
        member = self.config.member
        return RedirectTarget(kind="ticket") if member.public_launch and member.agent_url else None

    async def signed(self) -> str:
        """The compact JWS of a fresh ad (``GET /api/v1/status`` answers ``{"signed": ...}``)."""
        ad = await self.current()
        return ad.sign(self.keys.current().signing_key, self.clock)
