"""A light fake member farm: one aiohttp server that is many members, told apart by path prefix.

Member ``m00042`` has agent URL ``http://127.0.0.1:PORT/m00042``; the farm answers its signed
status ad at ``/m00042/api/v1/status`` and, for stream benchmarks, a slow launch event stream
at ``/m00042/api/v1/launches``. Ads are signed with the fleet's one member key (the broker
verifies them as it would a real member's); the farm does not check the broker's tokens,
since what is measured is the broker, and token checks are measured by bench_signing.

Run as a process: ``python benchmarks/memberfarm.py --members 1000 [--event-interval 1]``;
it prints ``farm listening on http://127.0.0.1:PORT`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from pathlib import Path

from aiohttp import web

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing
from fedproto.launch import KEEPALIVE, LaunchEvent
from fedproto.status import StatusAd

import fleet

FARM_KEY_DIR = "farm-keys"


class Farm:
    """Ads for ``members`` members, re-signed on each poll; launches that stream slowly."""

    def __init__(self, keyring: KeyRing, members: int, event_interval: float, events: int,
                 resign_after: float = 0.0) -> None:
        self.keyring = keyring
        # Reuse a member's signed ad for this long (0: sign anew on every poll). The farm is not
        # what is measured; at 10,000 members its own signing would otherwise starve the brokers.
        self.resign_after = resign_after
        self._signed: dict[str, tuple[float, str]] = {}
        self.counts: Counter[str] = Counter()
        self.clock = SystemClock()
        self.event_interval = event_interval
        self.events = events
        rng = random.Random(7)
        pool = fleet.repo_pool()
        self.ads: dict[str, StatusAd] = {}
        for i in range(members):
            record = fleet.record(i, keyring, "http://unused", random.Random(i))
            self.ads[record.id] = fleet.status_ad(record, self.clock.now(), rng, pool)
        self.polls = 0
        self.open_streams = 0

    async def status(self, request: web.Request) -> web.Response:
        template = self.ads.get(request.match_info["member"])
        if template is None:
            return web.json_response({"error": "not_found"}, status=404)
        now = self.clock.now()
        self.polls += 1
        self.counts[template.member_id] += 1
        cached = self._signed.get(template.member_id)
        if cached is None or now - cached[0] >= self.resign_after:
            ad = template.model_copy(update={"issued_at": now, "expires_at": now + 60.0})
            cached = self._signed[template.member_id] = (now, ad.sign(self.keyring.signing_key, self.clock))
        return web.json_response({"signed": cached[1]})

    async def launch(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.open_streams += 1
        try:
            for n in range(self.events):
                await asyncio.sleep(self.event_interval)
                event = LaunchEvent(phase="building", message=f"step {n}\n")
                await resp.write(event.sse())
                await resp.write(KEEPALIVE)
            await resp.write(LaunchEvent(phase="failed", status_code=500, message="bench over\n").sse())
        finally:
            self.open_streams -= 1
        return resp

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"polls": self.polls, "open_streams": self.open_streams})

    async def poll_counts(self, request: web.Request) -> web.Response:
        """How many times each member was polled since the last call (then starts counting anew)."""
        counts = {m: self.counts.get(m, 0) for m in self.ads}
        self.counts = Counter()
        return web.json_response(counts)


def jwks_of(key_dir: Path) -> dict[str, object]:
    """The farm members' public JWKS (to register them), loading or creating the key."""
    return json.loads(json.dumps(KeyRing.load_or_create(key_dir).public_set().to_jwks()))


def make_app(farm: Farm) -> web.Application:
    app = web.Application()
    app.router.add_get("/{member}/api/v1/status", farm.status)
    app.router.add_post("/{member}/api/v1/launches", farm.launch)
    app.router.add_get("/_stats", farm.stats)
    app.router.add_post("/_poll_counts", farm.poll_counts)
    return app


async def _serve(args: argparse.Namespace) -> None:
    keyring = KeyRing.load_or_create(Path(args.key_dir))
    farm = Farm(keyring, args.members, args.event_interval, args.events, args.resign_after)
    runner = web.AppRunner(make_app(farm), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    print(f"farm listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--key-dir", required=True, help="The members' key directory (created if missing).")
    parser.add_argument("--event-interval", type=float, default=1.0, help="Seconds between launch events.")
    parser.add_argument("--events", type=int, default=1_000_000, help="Events per launch before it fails.")
    parser.add_argument("--resign-after", type=float, default=0.0,
                        help="Seconds a member's signed ad is served again before it is signed anew (0: every poll).")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
