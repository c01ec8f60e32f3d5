"""A small real member agent that lies: run as its own process by the attack suite.

``python hostile_agent.py DIR PORT`` serves the member API on 127.0.0.1:PORT with the key in
DIR/keys (the key it enrolled with). It checks nothing the broker sends (it is hostile), signs
its status ads properly (it is enrolled), and says what DIR/mode.json tells it, read on every
request so a test can switch lies without a restart:

* ``ad``: extra status-ad fields (``datasets``, ``capacity``, ``images``);
* ``launch``: how a launch answers: ``honest`` (ready on its own host), ``foreign-url``,
  ``javascript-url``, ``extra-fields``, ``huge-line`` (one 10 MB line), ``huge-event``
  (30 MB spread over many ``data:`` lines) or ``stall`` (keepalives forever).

It records each launch request it gets in DIR/launches.log, one JSON line each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing
from fedproto.status import Capacity, ImageSummary, StatusAd

MB = 1024 * 1024


def _mode(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / "mode.json").read_text()))
    except (OSError, ValueError):
        return {}


def make_app(directory: Path, member_id: str, public_url: str) -> web.Application:
    keys = KeyRing.load(directory / "keys")
    clock = SystemClock()
    started = time.time()

    async def status(_request: web.Request) -> web.Response:
        lie = _mode(directory).get("ad", {})
        now = clock.now()
        ad = StatusAd(
            member_id=member_id, instance_id="hostile", generation=int(now - started) + 1, issued_at=now,
            expires_at=now + 60, healthy=True,
            capacity=Capacity(**lie.get("capacity", {"total": 4, "used": 0})), backend="hostile",
            providers=["gh", "git", "zenodo"], public_url=public_url, datasets=lie.get("datasets", []),
            images=ImageSummary.of(lie.get("images", [])),
        )
        return web.json_response({"signed": ad.sign(keys.signing_key, clock)})

    async def launch(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with open(directory / "launches.log", "ab") as fh:
            fh.write(body + b"\n")
        how = _mode(directory).get("launch", "honest")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(data: dict[str, Any]) -> None:
            await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")

        await event({"phase": "waiting", "message": "hostile member at work\n"})
        if how == "huge-line":
            await resp.write(b"data: " + b"x" * (10 * MB) + b"\n\n")
        elif how == "huge-event":
            for _ in range(30 * 16):  # 30 MB as 64 KiB data: lines of one event
                await resp.write(b"data: " + b"y" * (64 * 1024 - 7) + b"\n")
            await resp.write(b"\n")
        elif how == "stall":
            for _ in range(600):
                await resp.write(b":keepalive\n\n")
                await asyncio.sleep(0.5)
        ready: dict[str, Any] = {"phase": "ready", "url": public_url.rstrip("/") + "/user/hostile/", "token": "t0k"}
        if how == "foreign-url":
            ready["url"] = "https://evil.example/steal/"
        elif how == "javascript-url":
            ready["url"] = "javascript:alert(document.cookie)"
        elif how == "extra-fields":
            await event({"phase": "building", "message": "step\n", "member": "someone-else", "decision": "forged",
                         "evil": "<script>alert(1)</script>", "nested": {"deep": [1, 2, 3]}})
            ready.update({"injected": "yes", "member": "someone-else", "repo_url": "javascript:alert(1)"})
        await event(ready)
        await resp.write_eof()
        return resp

    async def delete(_request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/api/v1/launches", launch)
    app.router.add_delete("/api/v1/launches/{launch_id}", delete)
    return app


def main() -> None:
    directory, port = Path(sys.argv[1]), int(sys.argv[2])
    meta = json.loads((directory / "agent.json").read_text())
    print(f"hostile agent {meta['member_id']} listening on http://127.0.0.1:{port}", flush=True)
    web.run_app(make_app(directory, meta["member_id"], meta["public_url"]), host="127.0.0.1", port=port,
                print=None, handle_signals=True)


if __name__ == "__main__":
    main()
