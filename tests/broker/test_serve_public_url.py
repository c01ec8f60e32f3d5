"""`serve` and public_url: the default follows the listening port, and a public_url naming another local port is warned about."""

from __future__ import annotations

import pytest

from fedbroker.config import BrokerConfig
from fedbroker.serve import public_url_warning, with_public_url


def test_the_default_public_url_follows_the_port_the_broker_listens_on() -> None:
    assert with_public_url(BrokerConfig(port=9000)).public_url == "http://127.0.0.1:9000"
    assert with_public_url(BrokerConfig(host="0.0.0.0", port=9000)).public_url == "http://127.0.0.1:9000"
    # Set on purpose (a proxy in front): kept as it is.
    assert with_public_url(BrokerConfig(port=9000, public_url="https://binder.example.org")).public_url == "https://binder.example.org"


@pytest.mark.parametrize(("public_url", "host", "port", "warned"), [
    ("http://127.0.0.1:8585", "127.0.0.1", 9000, True),
    ("http://localhost:8585", "0.0.0.0", 9000, True),
    ("http://127.0.0.1:9000", "127.0.0.1", 9000, False),
    ("https://binder.example.org", "0.0.0.0", 8585, False),  # behind a proxy: its own port
    ("http://10.0.0.5:8585", "10.0.0.5", 8080, True),
], ids=["default-on-other-port", "localhost", "agrees", "proxy", "same-host-other-port"])
def test_serve_warns_when_public_url_and_the_listening_address_disagree(public_url: str, host: str, port: int, warned: bool) -> None:
    warning = public_url_warning(public_url, host, port)
    assert (warning is not None) == warned
    if warning:
        assert str(port) in warning and public_url in warning
