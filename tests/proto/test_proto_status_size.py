"""Regression: a status ad as large as its schema allows still verifies.

Found by benchmarks/bench_frontdoor.py: members with 400 cached images (a small mybinder
site) were rejected with "token is larger than 8192 bytes", the request-token limit, so
they never became healthy. Documents now have their own limit, sized to the schema.
"""

from __future__ import annotations

import pytest

from fedproto.clock import FakeClock
from fedproto.datasets import Dataset
from fedproto.errors import TokenError
from fedproto.keys import KeyRing, PrivateKey
from fedproto.status import MAX_IMAGE_HASHES, Capacity, ImageSummary, StatusAd, verify_status_ad
from fedproto.tokens import MAX_DOCUMENT_BYTES, MAX_TOKEN_BYTES, sign_document, verify_document


def _ad(clock: FakeClock, images: int, datasets: int = 0) -> StatusAd:
    now = clock.now()
    return StatusAd(member_id="big", instance_id="i", generation=1, issued_at=now, expires_at=now + 60, healthy=True,
                    capacity=Capacity(total=10, used=0), backend="t",
                    images=ImageSummary.of(f"gh:org/repo{k}" for k in range(images)),
                    datasets=[Dataset(id=f"10.5281/zenodo.{k}", size_bytes=k) for k in range(datasets)])


@pytest.mark.parametrize("images", [400, 5_000, MAX_IMAGE_HASHES], ids=lambda n: f"{n}-images")
def test_large_status_ads_verify(images: int) -> None:
    clock, ring = FakeClock(), KeyRing([PrivateKey.generate()])
    signed = _ad(clock, images, datasets=1_000).sign(ring.signing_key, clock)
    assert len(signed) > MAX_TOKEN_BYTES
    ad = verify_status_ad(signed, keys=ring.public_set(), member_id="big", clock=clock)
    assert len(ad.images.hashes) == images


def test_documents_still_have_a_size_limit() -> None:
    clock, ring = FakeClock(), KeyRing([PrivateKey.generate()])
    token = sign_document(ring.signing_key, issuer="big", payload={"pad": "x" * MAX_DOCUMENT_BYTES}, clock=clock,
                          ttl=60)
    with pytest.raises(TokenError) as info:
        verify_document(token, keys=ring.public_set(), issuer="big", clock=clock)
    assert info.value.reason == "oversize_token"
