"""The one URL policy both sides use: transport (https or dev loopback) and destinations (SSRF)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from fedproto.urlpolicy import (
    AddressPolicy,
    UrlPolicyError,
    check_destination,
    check_service_url,
    check_url_destination,
    is_loopback,
    origin,
    transport_allowed,
)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True),
        ("[::1]", True), ("::ffff:127.0.0.1", True),
        # A name is never loopback because of how it starts: anyone can point these anywhere.
        ("127.example.com", False), ("127.0.0.1.nip.io", False), ("localhost.example.com", False),
        ("10.0.0.1", False), ("example.org", False), ("", False), (None, False),
    ],
    ids=lambda v: repr(v),
)
def test_loopback_is_a_name_or_an_ip_literal(host: str | None, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    "url, dev, reason",
    [
        ("https://member.example.org", False, None),
        ("https://member.example.org/agent/", False, None),
        ("http://member.example.org", False, "insecure_url"),
        ("http://127.0.0.1:8586", False, "insecure_url"),
        ("http://127.0.0.1:8586", True, None),
        ("http://[::1]:8586", True, None),
        ("http://127.example.com:8586", True, "insecure_url"),
        ("http://10.1.2.3", True, "insecure_url"),
        ("ftp://member.example.org", False, "invalid_url"),
        ("javascript:alert(1)", True, "invalid_url"),
        ("https://user:pw@member.example.org", False, "invalid_url"),
        ("https://member.example.org/?q=1", False, "invalid_url"),
        ("https://member.example.org:99999", False, "invalid_url"),
        ("/relative", False, "invalid_url"),
    ],
)
def test_service_url_rule(url: str, dev: bool, reason: str | None) -> None:
    if reason is None:
        assert check_service_url(url, field="agent_url", dev=dev) == url.rstrip("/")
        assert transport_allowed(url, dev=dev)
    else:
        with pytest.raises(UrlPolicyError) as err:
            check_service_url(url, field="agent_url", dev=dev)
        assert err.value.reason == reason
        assert "agent_url" in err.value.message


def test_origin_fills_default_ports_and_lowercases() -> None:
    assert origin("https://Site.Example.org/user/x/") == ("https", "site.example.org", 443)
    assert origin("http://127.0.0.1:9000/x") == ("http", "127.0.0.1", 9000)
    assert origin("javascript:alert(1)") is None
    assert origin("data:text/html,hi") is None
    assert origin("https://x:notaport/") is None


def _fake_dns(table: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]

    getaddrinfo.calls = calls  # type: ignore[attr-defined]
    return getaddrinfo


DNS = {
    "public.example": ["93.184.216.34"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.5"],
    "v6loop.example": ["::1"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "multicast.example": ["224.0.0.251"],
}


@pytest.mark.parametrize(
    "url, refused",
    [
        ("https://public.example/repo.git", False),
        ("https://8.8.8.8/repo.git", False),
        ("http://127.0.0.1:22/", True),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://[::1]:8080/", True),
        ("http://0x7f000001/", True),  # resolved by the system resolver like inet_aton does
        ("http://10.1.2.3/", True),
        ("http://192.168.0.1/", True),
        ("http://172.16.5.4/", True),
        ("http://0.0.0.0/", True),
        ("http://[::]/", True),
        ("http://100.64.0.1/", True),
        ("https://metadata.example/", True),
        ("https://mixed.example/", True),  # one private address among public ones is enough
        ("https://v6loop.example/", True),
        ("https://mapped.example/", True),
        ("https://multicast.example/", True),
    ],
)
async def test_destinations_outside_dev_mode(url: str, refused: bool) -> None:
    real = asyncio.get_running_loop().getaddrinfo
    fake = _fake_dns(DNS)

    async def dns(host: str, port: int, **kw: Any) -> list[tuple[Any, ...]]:
        return await (fake if host.endswith(".example") else real)(host, port, **kw)

    policy = AddressPolicy.of(dev=False)
    if refused:
        with pytest.raises(UrlPolicyError) as err:
            await check_url_destination(url, policy, dns, what="repository URL")
        assert err.value.reason == "blocked_address"
        # The message names the rule only; no port, nothing that says whether anything listens.
        assert ":22" not in err.value.message and "refused" not in err.value.message
    else:
        assert await check_url_destination(url, policy, dns)


async def test_allow_list_opens_exceptions_and_dev_turns_the_check_off() -> None:
    dns = _fake_dns(DNS)
    with pytest.raises(UrlPolicyError):
        await check_destination("metadata.example", 80, AddressPolicy.of(dev=False, allow=["10.0.0.0/8"]), dns)
    assert await check_destination("mixed.example", 80, AddressPolicy.of(dev=False, allow=["10.0.0.0/8"]), dns) == [
        "93.184.216.34", "10.0.0.5"]
    assert await check_destination("mapped.example", 80, AddressPolicy.of(dev=False, allow=["10.0.0.1"]), dns)
    assert await check_destination("127.0.0.1", 80, AddressPolicy.of(dev=True), dns) == ["127.0.0.1"]


async def test_unresolvable_host_is_one_clear_error() -> None:
    with pytest.raises(UrlPolicyError) as err:
        await check_destination("nowhere.example", 443, AddressPolicy.of(dev=False), _fake_dns({}))
    assert err.value.reason == "unresolvable_host"
