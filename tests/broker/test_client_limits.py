"""Who the client is (trusted proxies), and the per-client limits: streams, enrollments, JSON depth."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from fedproto.clock import FakeClock

from fedbroker.config import BrokerConfig, RateLimitSettings
from fedbroker.jsonbody import MAX_JSON_DEPTH, nesting_depth
from fedbroker.routing.ratelimit import StreamSlots, client_address
from brokerkit import broker_app, feed_health, new_keyring, parse_stream, snapshot_of
from member_double import MemberDouble

XFF = "X-Forwarded-For"
SSE = {"Accept": "text/event-stream"}


@pytest.mark.parametrize(
    "values, proxies, expected",
    [
        pytest.param([], 1, "10.0.0.9", id="no-header-peer"),
        pytest.param(["203.0.113.7"], 1, "203.0.113.7", id="one-proxy-one-hop"),
        pytest.param(["spoofed, 203.0.113.7"], 1, "203.0.113.7", id="appending-proxy-ignores-client-words"),
        pytest.param(["1.1.1.1, 2.2.2.2, 203.0.113.7, 10.1.1.1"], 2, "203.0.113.7", id="two-proxies"),
        pytest.param(["1.1.1.1", "203.0.113.7"], 1, "203.0.113.7", id="header-repeated"),
        pytest.param(["203.0.113.7"], 3, "203.0.113.7", id="fewer-hops-than-proxies"),
        pytest.param(["spoofed"], 0, "10.0.0.9", id="zero-proxies-ignores-header"),
        pytest.param([" , "], 1, "10.0.0.9", id="empty-values"),
    ],
)
def test_client_address_counts_trusted_hops_from_the_right(values: list[str], proxies: int, expected: str) -> None:
    headers = CIMultiDict((XFF, v) for v in values)
    assert client_address(headers, "10.0.0.9", XFF, proxies) == expected


def test_without_a_configured_header_the_peer_is_the_client() -> None:
    assert client_address(CIMultiDict({XFF: "1.2.3.4"}), "10.0.0.9", None, 1) == "10.0.0.9"
    assert client_address(CIMultiDict(), None, None, 1) == "unknown"


def test_stream_slots_per_client() -> None:
    slots = StreamSlots(2)
    assert slots.take("a") and slots.take("a")
    assert not slots.take("a")
    assert slots.take("b")
    slots.give_back("a")
    assert slots.take("a")
    for _ in range(3):
        slots.give_back("a")
    assert slots.held("a") == 0
    assert all(StreamSlots(0).take("x") for _ in range(1000))


@pytest.mark.parametrize(
    "raw, depth",
    [
        (b'{"a": 1}', 0),  # few brackets: not scanned at all
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH + 1),
        (b"[" * 125_000, MAX_JSON_DEPTH + 1),
        (b'{"s": "' + b"[" * 5000 + b'"}', 1),  # brackets inside a string do not nest
        (b'{"s": "\\"' + b"[" * 5000 + b'"}', 1),
        (b"[" + b"[1]," * 5000 + b"1]", 2),
    ],
)
def test_nesting_depth(raw: bytes, depth: int) -> None:
    assert nesting_depth(raw) == depth


async def test_deep_json_is_a_clear_400_not_a_500(broker, admin_headers) -> None:
    for path in ("/api/v1/enroll", "/api/v1/members"):
        resp = await broker.post(path, data=b"[" * 125_000, headers=admin_headers)
        assert resp.status == 400, path
        assert (await resp.json())["error"] == "too_deep"


async def test_an_open_relay_stream_holds_a_slot_and_the_next_one_past_the_limit_is_refused(
        aiohttp_server: Any, aiohttp_client: Any) -> None:
    clock, keyring = FakeClock(), new_keyring()
    member = MemberDouble("m0", keyring.public_set(), clock, behaviour="hang")
    member.url = str((await aiohttp_server(member.app())).make_url("/"))
    config = BrokerConfig(dev=True, rate_limit=RateLimitSettings(streams_per_client=1))
    app = broker_app(config, clock, keyring, snapshot_of([member.entry()]))
    feed_health(app, [member])
    client = await aiohttp_client(app)
    held = await client.get("/build/gh/org/repo/HEAD", headers=SSE)  # headers only: the stream stays open
    refused = await client.get("/build/gh/org/repo/HEAD", headers=SSE)
    assert refused.status == 200 and refused.content_type == "text/event-stream"
    assert parse_stream(await refused.text()) == [{"phase": "failed", "status_code": 429, "message": (
        "Too many launches open from your address at once; wait for one to finish.\n")}]
    held.close()
