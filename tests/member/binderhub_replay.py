"""A local stand-in for BinderHub that replays the recorded responses in shared/fixtures/binderhub/, timing included.

Recorded delays are multiplied by ``TIME_SCALE`` (0.05: the 12.5 s fakebuild stream
replays in about 0.6 s); the order of events, their gaps relative to each other,
headers and bodies are as recorded. Two recordings cut their lines at 80
characters (``stream-hold-open.txt`` and the ``ready`` lines of
``ratelimit-headers.txt``); :func:`complete_event` keeps every complete field of
such a line and rebuilds ``url`` from the message or the preceding
"Server ready at" event, with a token marked as replayed.

The hold-open recording is served as BinderHub serves it: after ``ready`` the
connection stays open for 60 s (unscaled) with keepalive comments, and the
server notes when the client hung up.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

TIME_SCALE = 0.05
HOLD_OPEN_SECONDS = 60.0
RECORDED_HOST = "http://127.0.0.1:18000"
REPLAYED_TOKEN = "replayed-token-not-recorded"
# From BinderHub's quota code (binderhub/quota.py); no recording of it exists.
QUOTA_MESSAGE = "Too many users on this BinderHub! Try again soon.\n"
POD_QUOTA_CHECK = {"service": "Pod quota", "total_pods": 42, "build_pods": 0, "user_pods": 42, "quota": 100, "ok": True, "_ignore_failure": True}

_TIMED = re.compile(r"^\s*([0-9.]+)s (.*)$")
_STRING_FIELD = re.compile(r'"(\w+)": "((?:[^"\\]|\\.)*)"')
_SERVER_READY_AT = re.compile(r"Server ready at (/user/[^/\s]+/)")
_RUNNING_AT = re.compile(r"server running at (\S+/)")


@dataclass
class Recording:
    """One recorded response: status, headers, timed event lines, and whether the server held it open."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})
    events: list[tuple[float, str]] = field(default_factory=list)  # (seconds since request, JSON text)
    hold_open: bool = False


def complete_event(text: str, last_ready_path: str | None) -> dict[str, Any]:
    """The event of a recorded ``data:`` payload, rebuilt when the recording cut the line short."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    event = {k: json.loads(f'"{v}"') for k, v in _STRING_FIELD.findall(text)}
    if event.get("phase") == "ready" and "url" not in event:
        running = _RUNNING_AT.search(event.get("message", ""))
        url = running.group(1) if running else f"{RECORDED_HOST}{last_ready_path or '/user/replayed/'}"
        event.update(url=url, token=REPLAYED_TOKEN, message=f"server running at {url}\n")
    return event


def parse_timed(lines: list[str]) -> Recording:
    """Lines such as ``  3.02s data: {...}`` and ``  0.02s HTTP 200 text/event-stream``."""
    rec = Recording()
    for line in lines:
        match = _TIMED.match(line)
        if match:
            at, rest = float(match.group(1)), match.group(2)
            if rest.startswith("HTTP "):
                _, status, *ctype = rest.split()
                rec.status = int(status)
                rec.headers["Content-Type"] = ctype[0] if ctype else "text/plain"
            elif rest.startswith("data: "):
                rec.events.append((at, rest[6:]))
        elif line.startswith("data: "):
            rec.events.append((rec.events[-1][0] if rec.events else 0.0, line[6:]))
    return rec


def parse_sections(text: str, marker: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith(marker):
            current = sections.setdefault(line[len(marker):].strip(), [])
        else:
            current.append(line.rstrip("\r"))
    return sections


def parse_ratelimit(text: str) -> list[Recording]:
    """``ratelimit-headers.txt``: per request, a status line, headers, then one ``data:`` line."""
    recordings = []
    for lines in parse_sections(text, "--- request").values():
        rec = Recording(headers={})
        for line in lines:
            if line.startswith("HTTP/1.1 "):
                rec.status = int(line.split()[1])
            elif line.startswith("data: "):
                rec.events.append((0.0, line[6:]))
            elif ": " in line:
                name, value = line.split(": ", 1)
                rec.headers[name] = value
        recordings.append(rec)
    return recordings


def load_recordings(directory: Path) -> dict[str, Any]:
    """Every recorded file, parsed; keys name them by their file (and section)."""
    read = lambda name: (directory / name).read_text()  # noqa: E731
    errors = {title: parse_timed(lines) for title, lines in parse_sections(read("stream-errors.txt"), "###").items()}
    hold = parse_timed(read("stream-hold-open.txt").splitlines())
    hold.hold_open = True
    return {
        "fakebuild": parse_timed(read("stream-gh-fakebuild.txt").splitlines()),
        "prebuilt": parse_timed(read("stream-gh-prebuilt.txt").splitlines()),
        "git": parse_timed(read("stream-git-fakebuild.txt").splitlines()),
        "hold_open": hold,
        "errors": errors,
        "ratelimit": parse_ratelimit(read("ratelimit-headers.txt")),
        "health": json.loads(read("health.json").split("\nHTTP")[0]),
        "versions": json.loads(read("versions.json")),
        "ready": json.loads(read("ready-gh-fakebuild.json")),
    }


def error_recording(recordings: dict[str, Any], title_start: str) -> Recording:
    return next(rec for title, rec in recordings["errors"].items() if title.startswith(title_start))


class BinderHubReplay:
    """The aiohttp app: ``/build/...`` from ``routes`` (keyed by the raw path after /build/), /health, /versions, hub DELETE."""

    def __init__(self, recordings: dict[str, Any], hub_token: str = "hub-secret") -> None:
        self.recordings = recordings
        self.routes: dict[str, Recording] = {}
        self.health_body: dict[str, Any] = recordings["health"]
        self.health_status = 200
        self.requests: list[dict[str, Any]] = []
        self.hung_up_after: list[float] = []  # seconds after `ready` at which a held-open client hung up
        self.deleted_servers: list[str] = []
        self.hub_token = hub_token
        self._ratelimit_count = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/build/{rest:.+}", self.build)
        app.router.add_get("/health", self.health)
        app.router.add_get("/versions", self.versions)
        app.router.add_delete("/hub/api/users/{name}/server", self.delete_server)
        return app

    def with_pod_quota(self, **overrides: Any) -> None:
        self.health_body = {**self.recordings["health"], "checks": [*self.recordings["health"]["checks"], {**POD_QUOTA_CHECK, **overrides}]}

    def _pick(self, request: web.Request) -> Recording | None:
        raw = request.raw_path.split("?", 1)[0].removeprefix("/build/")
        if request.headers.get("Accept") != "text/event-stream":
            return error_recording(self.recordings, "no Accept")
        if raw.startswith("gh/org/ratelimited-"):
            self._ratelimit_count += 1
            ratelimit = self.recordings["ratelimit"]
            return ratelimit[min(self._ratelimit_count, len(ratelimit)) - 1]
        return self.routes.get(raw)

    async def build(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"path": request.raw_path, "headers": dict(request.headers)})
        rec = self._pick(request)
        if rec is None:
            return web.Response(status=404, text="<html>404: Not Found</html>", content_type="text/html")
        loop = asyncio.get_running_loop()
        started = loop.time()
        ctype = next((v for k, v in rec.headers.items() if k.lower() == "content-type"), "")
        if rec.status != 200 or not ctype.startswith("text/event-stream"):
            return web.Response(status=rec.status, text="<html>error</html>", content_type="text/html", headers=_extra(rec.headers))
        response = web.StreamResponse(status=rec.status, headers=rec.headers)
        await response.prepare(request)
        last_ready_path = None
        for at, text in rec.events:
            await asyncio.sleep(max(0.0, started + at * TIME_SCALE - loop.time()))
            event = complete_event(text, last_ready_path)
            ready_at = _SERVER_READY_AT.search(event.get("message", ""))
            last_ready_path = ready_at.group(1) if ready_at else last_ready_path
            await response.write(b":keepalive\n\ndata: " + json.dumps(event).encode() + b"\n\n")
        if rec.hold_open:
            await self._hold(response, loop.time())
        return response

    async def _hold(self, response: web.StreamResponse, since: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            while loop.time() - since < HOLD_OPEN_SECONDS:
                await asyncio.sleep(0.05)
                await response.write(b":keepalive\n\n")
        except (ConnectionResetError, RuntimeError, OSError):
            self.hung_up_after.append(loop.time() - since)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client closes the connection.
            self.hung_up_after.append(loop.time() - since)
            raise

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self.health_body, status=self.health_status)

    async def versions(self, request: web.Request) -> web.Response:
        return web.json_response(self.recordings["versions"])

    async def delete_server(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"token {self.hub_token}":
            return web.json_response({"status": 403, "message": "forbidden"}, status=403)
        self.deleted_servers.append(request.match_info["name"])
        return web.Response(status=204)


def _extra(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "content-type"}
