"""The broker keys this member pins, kept current from the broker's signed key set.

At enrollment the member pins the broker's JWKS (``broker.jwks.json``). From then on it
fetches ``GET {broker}/api/v1/broker-keys`` every ``[broker] keys_refresh`` seconds, and
sooner when a verified broker request announces a key it does not pin yet
(``Federation-Broker-Keys``). The answer is a document signed by the broker; it is
accepted only when a key pinned now signed it, and then replaces the pinned set, in
memory and on disk (atomically). So a broker key rotation reaches every member with no
restart; the status ad reports the pinned key ids so the broker knows when it may sign
with the new key (see ``fedproto.keyrotation``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from contextlib import suppress
from typing import TYPE_CHECKING

import aiohttp

from fedproto.clock import Clock
from fedproto.errors import ProtocolError
from fedproto.keyrotation import verify_key_set
from fedproto.keys import PublicKeySet
from fedproto.tls import client_context, describe_failure

from .config import atomic_write

if TYPE_CHECKING:
    from .config import MemberConfig

log = logging.getLogger(__name__)

KEY_SET_PATH = "/api/v1/broker-keys"
ANNOUNCE_HEADER = "Federation-Broker-Keys"
# A nudge (an announced unknown key) refreshes at most this often, so a chatty or hostile
# caller cannot turn the agent into a request amplifier against the broker.
MIN_NUDGE_INTERVAL = 5.0
FETCH_TIMEOUT = 10.0


class BrokerTrust:
    """The pinned broker key set; ``keys`` is None until the member has enrolled."""

    def __init__(self, config: MemberConfig, keys: PublicKeySet | None, clock: Clock, *, persist: bool = True) -> None:
        self._config = config
        self._clock = clock
        self._persist = persist
        self.keys = keys
        self.last_refresh_at: float | None = None
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._last_nudge = float("-inf")

    @property
    def kids(self) -> list[str] | None:
        return self.keys.kids if self.keys is not None else None

    def announce(self, header: str | None) -> None:
        """A verified broker request listed its published keys: refresh soon if one is new to us."""
        if not header or self.keys is None:
            return
        announced = [k.strip() for k in header.split(",")[:16] if k.strip()]
        if any(kid not in self.keys for kid in announced) or set(self.keys.kids) - set(announced):
            now = self._clock.now()
            if now - self._last_nudge >= MIN_NUDGE_INTERVAL:
                self._last_nudge = now
                self._wake.set()

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Fetch, verify and pin the broker's key set; True when the pinned set changed."""
        broker = self._config.broker
        if self.keys is None or not broker.url:
            return False
        url = broker.url.rstrip("/") + KEY_SET_PATH
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as resp:
                if resp.status != 200:
                    raise ProtocolError(f"the broker answered HTTP {resp.status}", reason="http")
                payload = await resp.json(content_type=None)
            signed = payload.get("signed") if isinstance(payload, dict) else None
            if not isinstance(signed, str):
                raise ProtocolError('the answer has no "signed" key set', reason="bad_document")
            fresh = verify_key_set(signed, pinned=self.keys, issuer=broker.id or None, clock=self._clock)
        except ProtocolError as exc:
            return self._failed(f"{url}: {exc.message}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return self._failed(f"cannot reach {url}: {describe_failure(exc)}")
        except ValueError:
            return self._failed(f"{url}: the answer is not JSON")
        self.last_refresh_at, self.last_error = self._clock.now(), None
        if fresh.kids == self.keys.kids:
            return False
        added = [k for k in fresh.kids if k not in self.keys]
        dropped = [k for k in self.keys.kids if k not in fresh]
        self.keys = fresh
        if self._persist:
            atomic_write(self._config.broker_jwks_path, (json.dumps(fresh.to_jwks(), indent=2) + "\n").encode())
        log.info("broker keys refreshed: added %s, dropped %s", added or "none", dropped or "none")
        return True

    def _failed(self, message: str) -> bool:
        if message != self.last_error:
            log.warning("could not refresh the broker's keys: %s", message)
        self.last_error = message
        return False

    async def run(self) -> None:
        """Refresh on the interval (with jitter) or when nudged, until cancelled."""
        ssl = client_context(self._config.ca_bundle)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as session:
            while True:
                await self.refresh(session)
                self._wake.clear()
                interval = self._config.broker.keys_refresh * (0.9 + 0.2 * random.random())
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
