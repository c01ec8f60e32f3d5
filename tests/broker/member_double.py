"""A test double of our member agent, to the member API contract, for broker unit tests.

It checks the broker's request tokens the way a real agent must, signs its status ads with
its own key, and misbehaves on request (``behaviour``) so failover can be exercised.
The end-to-end tests use real agents; this keeps broker tests independent of them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field

from aiohttp import web

from fedproto.clock import Clock
from fedproto.datasets import Dataset
from fedproto.errors import TokenError
from fedproto.keys import KeyRing, PrivateKey, PublicKeySet
from fedproto.launch import KEEPALIVE, LaunchEvent, LaunchRequest
from fedproto.location import Location
from fedproto.member import MemberRecord, MemberState
from fedproto.replay import ReplayCache
from fedproto.status import Capacity, ImageSummary, RedirectTarget, StatusAd
from fedproto.tokens import bearer, verify_request

from fedbroker.registry.snapshot import MemberEntry

# What a launch does: ok | http500 | failed429 | failed503 | failed404 | failed422 | quota | die | hang | slow
BEHAVIOURS = ("ok", "http500", "failed429", "failed501", "failed503", "failed404", "failed422", "quota", "die", "hang", "slow")


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MemberDouble:
    """One fake member. ``url`` is set once its server runs."""

    member_id: str
    broker_keys: PublicKeySet
    clock: Clock
    broker_id: str = "broker"
    behaviour: str = "ok"
    healthy: bool = True
    status_http_error: bool = False
    capacity: Capacity = field(default_factory=lambda: Capacity(total=10, used=0))
    datasets: list[Dataset] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    location: Location = field(default_factory=Location)
    providers: list[str] = field(default_factory=list)
    serves: list[str] | None = None  # the ad's repo-key globs
    ad_ttl: float = 60.0
    url: str = ""
    keyring: KeyRing = field(default_factory=lambda: KeyRing([PrivateKey.generate()]))
    launches: list[LaunchRequest] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    replay: ReplayCache = field(default_factory=ReplayCache)
    # Where redirect mode may send browsers: "binderhub" (its own BinderHub at its public URL),
    # "ticket" (its agent, with a launch ticket) or None (never a redirect target).
    redirect: str | None = "binderhub"
    # Canary checks: where the double's "servers" answer, whether they accept their token, the
    # launch time a fake clock is advanced by before `ready`, and a `built` event before it.
    public_url: str = ""
    server_ok: bool = True
    launch_seconds: float = 0.0
    emit_built: bool = False
    ready_url: str | None = None  # an absolute url to put in `ready` instead of /user/<id>

    def ad(self) -> StatusAd:
        now = self.clock.now()
        return StatusAd(
            member_id=self.member_id, instance_id="double", generation=1, issued_at=now, expires_at=now + self.ad_ttl,
            healthy=self.healthy, capacity=self.capacity, backend="double", providers=self.providers,
            datasets=self.datasets, location=self.location, images=ImageSummary.of(self.images),
            redirect=self._redirect(), serves=self.serves,
        )

    def _redirect(self) -> RedirectTarget | None:
        if self.redirect == "binderhub":
            return RedirectTarget(kind="binderhub", url=f"https://{self.member_id}.example")
        return RedirectTarget(kind="ticket") if self.redirect == "ticket" else None

    def entry(self, state: MemberState = MemberState.active, weight: float = 1.0, url: str | None = None,
              canary: bool = True) -> MemberEntry:
        agent = url or self.url
        record = MemberRecord(
            id=self.member_id, display_name=self.member_id, agent_url=agent,
            public_url=self.public_url or f"https://{self.member_id}.example/", state=state, weight=weight,
            canary=canary, jwks=self.keyring.public_set().to_jwks(), created_at=0.0, updated_at=0.0,
            datasets=self.datasets,  # the registry's word: routing believes no dataset from an ad alone
        )
        return MemberEntry(record=record, keys=self.keyring.public_set())

    # -- the agent API ----------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/status", self._status)
        app.router.add_post("/api/v1/launches", self._launch)
        app.router.add_delete("/api/v1/launches/{launch_id}", self._delete)
        app.router.add_get("/user/{launch_id}/api/status", self._server_status)
        return app

    async def _server_status(self, request: web.Request) -> web.Response:
        """A started server's ``api/status``, which wants the token the launch returned."""
        if not self.server_ok or request.headers.get("Authorization") != f"token tok-{self.member_id}":
            return web.json_response({"message": "Forbidden"}, status=403)
        return web.json_response({"started": "2026-01-01T00:00:00Z"})

    async def _check(self, request: web.Request) -> bytes:
        body = await request.read()
        verify_request(
            bearer(request.headers.get("Authorization")), keys=self.broker_keys, issuer=self.broker_id,
            audience=self.member_id, method=request.method, path_qs=request.raw_path, body=body,
            clock=self.clock, replay=self.replay,
        )
        return body

    async def _status(self, request: web.Request) -> web.Response:
        try:
            await self._check(request)
        except TokenError as exc:
            return web.json_response({"error": exc.reason, "message": exc.message}, status=401)
        if self.status_http_error:
            return web.json_response({"error": "broken", "message": "down"}, status=500)
        return web.json_response({"signed": self.ad().sign(self.keyring.signing_key, self.clock)})

    async def _delete(self, request: web.Request) -> web.Response:
        await self._check(request)
        self.deleted.append(request.match_info["launch_id"])
        return web.Response(status=204)

    async def _launch(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._check(request)
        except TokenError as exc:
            return web.json_response({"error": exc.reason, "message": exc.message}, status=401)
        launch = LaunchRequest.model_validate(json.loads(body))
        self.launches.append(launch)
        if self.behaviour == "http500":
            return web.json_response({"error": "internal", "message": "backend exploded"}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(LaunchEvent(phase="waiting", message="Waiting for build to start...\n").sse())
        await resp.write(KEEPALIVE)
        terminal = self._terminal(launch)
        if terminal is None:
            if self.behaviour == "die":
                await resp.write(LaunchEvent(phase="launching", message="Launching server...\n").sse())
                assert request.transport is not None
                request.transport.abort()  # the member dies mid-stream
                return resp
            await asyncio.sleep(3600)  # hang: never answers again
        if self.behaviour == "slow":
            await asyncio.sleep(0.3)
        if self.emit_built:
            await resp.write(LaunchEvent(phase="built", message="Built image, launching...\n").sse())
            await asyncio.sleep(0.05)  # lets the broker take `built` before the fake clock moves on
        if self.launch_seconds and hasattr(self.clock, "advance"):
            self.clock.advance(self.launch_seconds)
        await resp.write(terminal.sse())
        await resp.write_eof()
        return resp

    def _terminal(self, launch: LaunchRequest) -> LaunchEvent | None:
        fails = {
            "failed429": (429, "Too many users on this member.\n"),
            "failed501": (501, f"provider {launch.provider!r} is not supported by this member\n"),
            "failed501": (501, f"this member serves no image for {launch.provider}:{launch.spec} (no rule matches it)\n"),
            "failed503": (503, "Site trouble.\n"),
            "failed404": (404, f"Could not resolve ref for {launch.provider}:{launch.spec}.\n"),
            "failed422": (422, "Building the environment failed: pip could not install requirements.txt\n"),
        }
        if self.behaviour in fails:
            code, msg = fails[self.behaviour]
            return LaunchEvent(phase="failed", status_code=code, message=msg)
        if self.behaviour == "quota":
            return LaunchEvent(phase="failed", message="User server quota exceeded.\n")
        if self.behaviour in ("die", "hang"):
            return None
        return LaunchEvent(
            phase="ready", message="server running\n", url=self.ready_url or f"/user/{launch.launch_id}",
            token="tok-" + self.member_id,
            image="img", repo_url="https://github.com/x/y", binder_request=f"v2/{launch.provider}/{launch.spec}",
        )
