"""The member client checks agent addresses where it connects: registered URLs that resolve inside are never called."""

from __future__ import annotations

import aiohttp
import pytest

from fedbroker.config import BrokerConfig
from fedbroker.launch.memberclient import GuardedResolver, MemberCallError, MemberClient, guarded_resolver
from fedproto.clock import FakeClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.urlpolicy import AddressPolicy

from member_double import MemberDouble


async def test_names_resolving_inside_are_refused_at_connect_time() -> None:
    resolver = GuardedResolver(AddressPolicy.of(dev=False))
    with pytest.raises(OSError, match="loopback"):
        await resolver.resolve("localhost", 443)
    await resolver.close()
    allowed = GuardedResolver(AddressPolicy.of(dev=False, allow=["127.0.0.0/8", "::1/128"]))
    assert await allowed.resolve("localhost", 443)
    await allowed.close()


@pytest.mark.parametrize("url", ["https://127.0.0.1:8443", "https://[::1]", "https://169.254.169.254",
                                 "https://10.1.2.3", "http://127.0.0.1:8586"])
async def test_internal_agent_urls_are_not_called_outside_dev_mode(url: str) -> None:
    config = BrokerConfig()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=guarded_resolver(config))) as session:
        client = MemberClient(config, KeyRing([PrivateKey.generate()]), FakeClock(), session)
        with pytest.raises(MemberCallError) as err:
            double = MemberDouble("m1", KeyRing([PrivateKey.generate()]).public_set(), FakeClock())
            client.url(double.entry(url=url), "/api/v1/status")
    assert err.value.kind == "insecure"
