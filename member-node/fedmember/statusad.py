"""The member's status ad: what it tells the broker about itself, signed with its key."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from fedproto import PROTOCOL_VERSION, __version__
from fedproto.clock import Clock
from fedproto.datasets import Dataset
from fedproto.keys import KeyDir
from fedproto.status import ImageSummary, RedirectTarget, StatusAd

from .backends.base import Backend
from .brokertrust import BrokerTrust
from .config import ConfigError, MemberConfig, load_config
from .healthcheck import HealthService

log = logging.getLogger(__name__)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


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
        self._datasets = list(config.member.datasets)
        self._config_mtime = _mtime(config.config_file)

    def datasets(self) -> list[Dataset]:
        """``[member] datasets`` as member.toml says now: an edit (a new dataset, a moved ``mount_path``)
        reaches the next ad and the backend's mounts without a restart or a new enrollment. A file
        that does not load keeps the last good list (and says so in the log)."""
        mtime = _mtime(self.config.config_file)
        if mtime is not None and mtime != self._config_mtime:
            self._config_mtime = mtime
            try:
                fresh = load_config(self.config.config_file).member.datasets
            except ConfigError as exc:
                log.warning("member.toml changed but does not load; keeping its datasets as they were: %s", exc)
            else:
                if fresh != self._datasets:
                    log.info("datasets changed in member.toml: %s", ", ".join(d.id for d in fresh) or "none")
                    self._datasets = list(fresh)
                    self.backend.context.datasets[:] = fresh  # the local backend mounts from these
        return self._datasets

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
            serves=list(self.backend.serves) if self.backend.serves is not None else None,
            backend=self.backend.kind,
            public_url=member.public_url or None,
            datasets=self.datasets(),
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
