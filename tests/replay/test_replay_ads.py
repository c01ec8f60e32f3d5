"""What simulated members publish: image summaries as of the ad's issue time, and the router reading them."""

from __future__ import annotations

import fedbroker.routing.rank
from benchmarks.replay import policies
from benchmarks.replay.ads import AdFactory, ImageLedger
from benchmarks.replay.federation import mybinder
from fedproto.status import image_hash


def test_an_image_is_listed_once_its_build_finished() -> None:
    ledger = ImageLedger()
    ledger.built("gh:org/a", ready_at=100.0)
    ledger.built("gh:org/b", ready_at=50.0)
    factory = AdFactory(mybinder()[0], interval=10.0)
    early, middle, late = (factory.ad(t, used=1, building=0, images=ledger) for t in (40.0, 60.0, 100.0))
    assert early.images.hashes == [] and not early.images.has("gh:org/b")
    assert middle.images.hashes == [image_hash("gh:org/b")] and middle.images.has("gh:org/b")
    assert not middle.images.has("gh:org/a")
    assert sorted(late.images.hashes) == sorted([image_hash("gh:org/a"), image_hash("gh:org/b")])
    assert late.images.has("gh:org/a")
    # Ads already issued keep what they said.
    assert middle.images.hashes == [image_hash("gh:org/b")]


def test_only_the_first_image_of_a_repo_counts() -> None:
    ledger = ImageLedger()
    ledger.built("gh:org/a", ready_at=100.0)
    ledger.built("gh:org/a", ready_at=30.0)  # another ref, built faster: the summary is per repo
    assert ledger.hashes_as_of(50.0) == []
    assert ledger.hashes_as_of(100.0) == [image_hash("gh:org/a")]
    assert len(ledger) == 1


def test_ads_carry_capacity_and_expire_later() -> None:
    ad = AdFactory(mybinder()[2], interval=10.0).ad(1000.0, used=7, building=2, images=ImageLedger())
    assert (ad.member_id, ad.capacity.total, ad.capacity.free) == ("gamma", 100, 91)
    assert ad.expires_at > ad.issued_at + 10.0


def test_the_router_policy_calls_the_brokers_rank() -> None:
    assert policies.rank is fedbroker.routing.rank.rank
