"""Hostile clients against a real ``fedbroker serve`` outside development mode.

* SSRF: enrollment and admin registration with agent URLs on loopback (also as ``0x7f000001``
  and ``[::1]``), the metadata service or private networks are refused; a loopback listener
  sees no connection, and nothing is written (the enrollment token stays unused);
* spoofed forwarding headers: with one trusted proxy, the client is the hop that proxy wrote,
  so rotating ``X-Forwarded-For`` (``spoofed, real``) does not escape the launch limit;
* token escalation: a short-lived narrow token cannot mint a longer-lived one, an
  ``auto_approve`` token, or revoke a broader one; revocation (API and CLI) works at once and
  the audit log names token ids;
* enrollment flooding: bogus enrollments are refused before anything is stored, then rate
  limited, and a real member still enrolls;
* deep JSON: 400, not a RecursionError 500;
* slowloris: connections that dribble their headers, and idle keep-alive connections, are
  closed by the broker, while normal requests stay fast.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from fedbroker.adminclient import AdminClientError
from fedproto.clock import SystemClock
from fedproto.enrollment import EnrollmentToken
from fedproto.keys import KeyRing, PrivateKey
from fedproto.tokens import sign_request

from canary import Canary
from slowloris import dribble
from hostilekit import BrokerProcess, leftovers

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = Path(tmp_path_factory.mktemp("hostile-clients"))
    process = BrokerProcess(root, sections={
        "rate_limit": {"launches": 3, "client_ip_header": "X-Forwarded-For", "trusted_proxies": 1,
                       "enrollments": 8, "enroll_period": 600},
        "connections": {"header_timeout": HEADER_TIMEOUT, "keepalive_timeout": KEEPALIVE_TIMEOUT},
    })
    try:
        yield process.start()
    finally:
        process.stop()
        assert leftovers(root) == [], "a process outlived the attack"


def _http(broker: BrokerProcess, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(broker.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _enrollment(token: str, member_id: str, agent_url: str, key: PrivateKey | None = None) -> tuple[bytes, str]:
    key = key or PrivateKey.generate()
    body = json.dumps({"token": token, "member_id": member_id, "display_name": member_id, "agent_url": agent_url,
                       "public_url": f"https://{member_id}.example.org", "jwks": KeyRing([key]).public_set().to_jwks()}).encode()
    audience = EnrollmentToken.parse(token).broker_kid
    return body, sign_request(key, issuer=member_id, audience=audience, method="POST", path_qs="/api/v1/enroll",
                              body=body, clock=SystemClock())


def _enroll(broker: BrokerProcess, token: str, member_id: str, agent_url: str, client: str,
            key: PrivateKey | None = None) -> tuple[int, dict[str, Any]]:
    body, signature = _enrollment(token, member_id, agent_url, key)
    status, _headers, raw = _http(broker, "POST", "/api/v1/enroll", body, {
        "Authorization": f"Bearer {signature}", "Content-Type": "application/json",
        "X-Forwarded-For": f"198.51.100.77, {client}"})
    return status, json.loads(raw)


def _members(broker: BrokerProcess) -> list[str]:
    return [m["id"] for m in broker.admin().list_members()["members"]]


def _registry(broker: BrokerProcess) -> sqlite3.Connection:
    return sqlite3.connect(broker.directory / "broker" / "registry.sqlite")


def test_ssrf_agent_urls_are_refused_without_contact(broker: BrokerProcess) -> None:
    admin = broker.admin()
    minted = admin.create_enroll_token("ssrf", 600.0, False)
    jwks = KeyRing([PrivateKey.generate()]).public_set().to_jwks()
    with Canary() as canary:
        targets = [f"https://127.0.0.1:{canary.port}", f"https://localhost:{canary.port}",
                   f"https://0x7f000001:{canary.port}", f"https://[::1]:{canary.port}",
                   "https://169.254.169.254", "https://10.0.0.1", "https://192.168.1.1:8443", "https://0.0.0.0"]
        for i, url in enumerate(targets):
            status, answer = _enroll(broker, minted["token"], f"ssrf{i}", url, client=f"203.0.113.{i + 1}")
            assert (status, answer["error"]) == (400, "blocked_address"), (url, answer)
            with pytest.raises(AdminClientError, match="blocked_address"):
                admin.call("POST", "/api/v1/members", {"id": f"pre{i}", "display_name": "x", "agent_url": url,
                                                       "public_url": "https://x.example.org", "jwks": jwks})
        time.sleep(1.0)  # give any stray poll a chance to arrive
    assert canary.hits == 0
    assert _members(broker) == []
    (row,) = [t for t in admin.list_tokens("enroll-tokens")["tokens"] if t["id"] == minted["id"]]
    assert row["used_at"] is None  # refused before anything was written


def test_spoofed_forwarding_headers_do_not_escape_the_launch_limit(broker: BrokerProcess) -> None:
    def launch(forwarded: str) -> tuple[str, str]:
        _status, headers, body = _http(broker, "GET", "/build/gh/org/repo/HEAD",
                                       headers={"Accept": "text/event-stream", "X-Forwarded-For": forwarded})
        return headers.get("x-ratelimit-remaining", ""), body.decode()

    results = [launch(f"10.9.9.{i}, 203.0.113.200") for i in range(5)]  # rotating the client-written value
    assert [r[0] for r in results] == ["2", "1", "0", "0", "0"]
    assert all('"status_code": 429' in body for _, body in results[3:])
    remaining, body = launch("203.0.113.200")  # the real address alone, as a proxy writes it
    assert remaining == "0" and '"status_code": 429' in body
    assert launch("10.9.9.1, 203.0.113.201")[0] == "2"  # another real client is not affected


def test_token_escalation_is_refused_and_revocation_works(broker: BrokerProcess) -> None:
    root = broker.admin()
    short = root.create_admin_token("short", ["tokens:write", "members:read"], 60.0)
    narrow = broker.admin(short["token"])
    with _registry(broker) as db:
        tokens_before = db.execute("SELECT count(*) FROM admin_tokens").fetchone()[0]
    child = narrow.create_admin_token("long", ["members:read"], 3650 * 86400.0)
    assert child["expires_at"] <= short["expires_at"]
    with pytest.raises(AdminClientError, match="403 scope_escalation"):
        narrow.create_admin_token("wider", ["members:write"], 60.0)
    with pytest.raises(AdminClientError, match="403 scope_escalation"):
        narrow.create_enroll_token("sneaky", 600.0, True)
    init_id = next(t["id"] for t in root.list_tokens("admin-tokens")["tokens"] if t["name"] != "short"
                   and t["id"] not in (short["id"], child["id"]))
    with pytest.raises(AdminClientError, match="403 scope_escalation"):
        narrow.revoke_token("admin-tokens", init_id)
    with _registry(broker) as db:
        assert db.execute("SELECT count(*) FROM admin_tokens").fetchone()[0] == tokens_before + 1  # only `long`
    # Revocation through the CLI, as an operator would.
    cli = [sys.executable, "-m", "fedbroker", "admin-token", "revoke", child["id"], "--url", broker.url,
           "--token", broker.admin_token]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"token {child['id']} revoked" in done.stdout, done.stderr
    with pytest.raises(AdminClientError, match="401 revoked_token"):
        broker.admin(child["token"]).list_members()
    enroll = root.create_enroll_token("to revoke", 600.0, False)
    done = subprocess.run([sys.executable, "-m", "fedbroker", "enroll-token", "revoke", enroll["id"], "--url", broker.url,
                           "--token", broker.admin_token], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, answer = _enroll(broker, enroll["token"], "late", "https://late.example.org", client="203.0.113.90")
    assert (status, answer["error"]) == (401, "revoked_enrollment_token")
    with _registry(broker) as db:
        actors = {row[0] for row in db.execute("SELECT actor FROM audit_log WHERE action = 'admin_token.revoke'")}
    assert actors == {f"admin:{init_id}"}  # the audit log names the acting token by id


def test_enrollment_flooding_is_refused_then_limited(broker: BrokerProcess) -> None:
    real = broker.admin().create_enroll_token("real", 600.0, False)
    kid = EnrollmentToken.parse(real["token"]).broker_kid
    statuses = []
    for i in range(20):
        bogus = str(EnrollmentToken(secret=f"guess{i:04d}" + "x" * 30, broker_kid=kid))
        status, answer = _enroll(broker, bogus, f"flood{i}", "https://flood.example.org", client="203.0.113.66")
        statuses.append((status, answer["error"]))
    assert statuses[:8] == [(401, "unknown_enrollment_token")] * 8
    assert set(statuses[8:]) == {(429, "rate_limited")}
    # The flood stored nothing: a real member, from its own address, enrolls at once.
    status, answer = _enroll(broker, real["token"], "realsite", "https://realsite.example.org", client="203.0.113.67")
    assert status == 201, answer
    assert "realsite" in _members(broker) and not any(m.startswith("flood") for m in _members(broker))


def test_deep_json_is_a_clear_400(broker: BrokerProcess) -> None:
    deep = b"[" * 125_000
    status, _headers, raw = _http(broker, "POST", "/api/v1/enroll", deep, {
        "Content-Type": "application/json", "X-Forwarded-For": "203.0.113.55"})
    assert (status, json.loads(raw)["error"]) == (400, "too_deep")
    status, _headers, raw = _http(broker, "POST", "/api/v1/members", deep, {
        "Content-Type": "application/json", "Authorization": f"Bearer {broker.admin_token}"})
    assert (status, json.loads(raw)["error"]) == (400, "too_deep")


async def test_slowloris_and_idle_connections_are_closed(broker: BrokerProcess) -> None:
    host, port = "127.0.0.1", int(broker.url.rsplit(":", 1)[1])

    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    slow = [asyncio.create_task(dribble(host, port, head)) for _ in range(200)]
    await asyncio.sleep(0.5)
    started = time.monotonic()
    status, _headers, _body = await asyncio.to_thread(_http, broker, "GET", "/health")
    assert status in (200, 503) and time.monotonic() - started < 2.0
    lifetimes = await asyncio.wait_for(asyncio.gather(*slow), 60)
    assert max(lifetimes) < HEADER_TIMEOUT + 3.0, sorted(lifetimes)[-3:]

    # An idle keep-alive connection is closed after keepalive_timeout.
    with socket.create_connection((host, port), timeout=KEEPALIVE_TIMEOUT + 5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 ")
        idle_from = time.monotonic()
        while sock.recv(65536):  # the rest of the answer, then EOF when the broker closes
            pass
        assert time.monotonic() - idle_from < KEEPALIVE_TIMEOUT + 3.0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedbroker", *args], capture_output=True, text=True, timeout=60)


def test_a_data_provider_declares_only_its_own_datasets(broker: BrokerProcess, tmp_path: Path) -> None:
    """Through the CLI, as a provider would: its own datasets yes, others' no, and a stranger's key never."""
    keys = tmp_path / "zenodo-keys"
    made = _cli("dataset-owners", "keygen", str(keys))
    assert made.returncode == 0, made.stderr
    (tmp_path / "zenodo.jwks.json").write_text(made.stdout)
    admin = ["--url", broker.url, "--token", broker.admin_token]
    added = _cli("dataset-owners", "add", "zenodo", "--prefix", "10.5281/zenodo.", "--jwks",
                 str(tmp_path / "zenodo.jwks.json"), *admin)
    assert added.returncode == 0, added.stderr
    as_owner = ["--owner", "zenodo", "--owner-keys", str(keys), "--broker-id", "attacked", "--url", broker.url]
    mine = _cli("datasets", "declare", "10.5281/zenodo.99", "--any-server", *as_owner)
    assert mine.returncode == 0 and "declared 10.5281/zenodo.99" in mine.stdout, mine.stderr
    theirs = _cli("datasets", "declare", "10.6084/m9.figshare.1", "--server", "realsite", *as_owner)
    assert theirs.returncode == 1 and "403 not_your_dataset" in theirs.stderr
    stranger = tmp_path / "stranger-keys"
    assert _cli("dataset-owners", "keygen", str(stranger)).returncode == 0
    forged = _cli("datasets", "declare", "10.5281/zenodo.100", "--any-server", "--owner", "zenodo", "--owner-keys",
                  str(stranger), "--broker-id", "attacked", "--url", broker.url)
    assert forged.returncode == 1 and "401" in forged.stderr
    removed = _cli("datasets", "remove", "10.5281/zenodo.99", *as_owner)
    assert removed.returncode == 0, removed.stderr
    listed = json.loads(_cli("datasets", "list", "--json", *admin).stdout)
    assert listed["datasets"] == []
    with _registry(broker) as db:
        actions = [row[0] for row in db.execute("SELECT action FROM audit_log WHERE actor = 'owner:zenodo'")]
    assert actions == ["dataset.declare", "dataset.remove"]
