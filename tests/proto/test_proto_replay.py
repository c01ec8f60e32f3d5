"""The replay cache forgets ids after their expiry and stays bounded."""

from __future__ import annotations

import pytest

from fedproto.errors import TokenError
from fedproto.replay import ReplayCache


def test_forgets_after_expiry_plus_leeway() -> None:
    cache = ReplayCache(leeway=5)
    cache.check_and_add("a" * 10, exp=100, now=50)
    with pytest.raises(TokenError):
        cache.check_and_add("a" * 10, exp=100, now=104)
    cache.check_and_add("b" * 10, exp=200, now=106)  # purges "a..."
    assert len(cache) == 1


def test_full_cache_refuses_instead_of_forgetting_early() -> None:
    cache = ReplayCache(max_entries=2)
    cache.check_and_add("x1" * 5, exp=100, now=0)
    cache.check_and_add("x2" * 5, exp=100, now=0)
    with pytest.raises(TokenError) as info:
        cache.check_and_add("x3" * 5, exp=100, now=0)
    assert info.value.reason == "replay_cache_full"
    cache.check_and_add("x3" * 5, exp=300, now=200)  # the old ones expired
    assert len(cache) == 1
