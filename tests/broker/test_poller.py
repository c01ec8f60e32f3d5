"""The status poller and the member client's status call, against member doubles."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import pytest

from fedproto.clock import FakeClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.member import MemberState

from fedbroker.config import BrokerConfig, HealthSettings
from fedbroker.routing.health import HealthState, HealthTable
from fedbroker.launch.memberclient import MemberCallError, MemberClient
from fedbroker.launch.poller import Poller
from fedbroker.registry.snapshot import SnapshotHolder
from brokerkit import new_keyring, snapshot_of
from member_double import MemberDouble, free_port


async def setup(aiohttp_server: Any, session: aiohttp.ClientSession, **double: Any):  # type: ignore[no-untyped-def]
    clock, keyring = FakeClock(), new_keyring()
    d = MemberDouble("m1", keyring.public_set(), clock, **double)
    d.url = str((await aiohttp_server(d.app())).make_url("/"))
    holder = SnapshotHolder(snapshot_of([d.entry()]))
    health = HealthTable(HealthSettings(unhealthy_after=2), clock, random.Random(0))
    client = MemberClient(BrokerConfig(dev=True), keyring, clock, session)
    return d, holder, health, Poller(holder, health, client, HealthSettings(), clock), clock


async def test_poll_verifies_and_records(aiohttp_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        d, holder, health, poller, clock = await setup(aiohttp_server, session)
        assert await poller.poll_due() == 1
        view = health.views()["m1"]
        assert view.state is HealthState.healthy and view.ad is not None
        assert await poller.poll_due() == 0  # not due again yet
        clock.advance(13)
        d.status_http_error = True
        await poller.poll_due()
        clock.advance(13)
        await poller.poll_due()
        assert health.views()["m1"].state is HealthState.unhealthy


async def test_ad_signed_by_another_key_is_a_failed_poll(aiohttp_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        d, holder, health, poller, _ = await setup(aiohttp_server, session)
        d.keyring = KeyRing([PrivateKey.generate()])  # the member's key is not the registered one
        await poller.poll_due()
        view = health.views()["m1"]
        assert view.state is HealthState.unhealthy and "unknown key" in (view.last_error or "")


async def test_follows_snapshot_changes(aiohttp_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        d, holder, health, poller, _ = await setup(aiohttp_server, session)
        other = MemberDouble("m2", d.broker_keys, d.clock, url=f"http://127.0.0.1:{free_port()}")
        assert await poller.poll_due() == 1
        assert set(poller._client._known_images) == {"m1"}  # its last image summary, kept for the next ad
        holder.replace(snapshot_of([d.entry(MemberState.retired), other.entry()], revision=2))
        assert health.ids() == ["m2"]
        assert poller._client._known_images == {}  # a retired member's is dropped with it
        await poller.poll_due()
        assert "cannot reach agent" in (health.views()["m2"].last_error or "")


@pytest.mark.parametrize(
    ("url", "dev", "ok"),
    [("http://127.0.0.1:1", True, True), ("http://127.0.0.1:1", False, False),
     ("http://example.org", True, False), ("https://example.org", False, True)],
    ids=["http-loopback-dev", "http-without-dev", "http-remote-dev", "https"],
)
async def test_plain_http_only_in_dev_on_loopback(url: str, dev: bool, ok: bool) -> None:
    clock, keyring = FakeClock(), new_keyring()
    async with aiohttp.ClientSession() as session:
        client = MemberClient(BrokerConfig(dev=dev), keyring, clock, session)
        entry = MemberDouble("m1", keyring.public_set(), clock).entry(url=url)
        if ok:
            assert str(client.url(entry, "/api/v1/status")).endswith("/api/v1/status")
        else:
            with pytest.raises(MemberCallError, match="must be https"):
                client.url(entry, "/api/v1/status")


async def test_an_unchanged_image_summary_is_shared_between_polls_and_a_changed_one_is_not(aiohttp_server: Any) -> None:
    async with aiohttp.ClientSession() as session:
        d, holder, health, poller, clock = await setup(aiohttp_server, session, images=["gh:org/a", "gh:org/b"])
        await poller.poll_due()
        first = health.views()["m1"].ad
        clock.advance(13)
        await poller.poll_due()
        second = health.views()["m1"].ad
        assert first is not None and second is not None and second.issued_at > first.issued_at
        assert second.images is first.images
        d.images = ["gh:org/a", "gh:org/c"]
        clock.advance(13)
        await poller.poll_due()
        third = health.views()["m1"].ad
        assert third is not None and third.images is not first.images and third.images.has("gh:org/c")
