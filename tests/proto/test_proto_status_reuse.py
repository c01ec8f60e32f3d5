"""A new status ad shares its image summary with the member's previous ad only when the summary is
exactly the same, and is checked in full all the same (signature, key, member, times, schema).

The broker passes each member's last image summary (:class:`KnownImages`) to :func:`verify_status_ad`
so that ~400 image hashes are not validated and interned again on every poll; these tests hold that shortcut to
being a pure memo: it never lets through an ad that verifying without it would refuse, and never
gives an ad other images than the ones it carries.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

import pytest

from fedproto.clock import FakeClock
from fedproto.errors import TokenError
from fedproto.keys import KeyRing, PrivateKey, b64url
from fedproto.status import Capacity, ImageSummary, KnownImages, StatusAd, verify_status_ad
from fedproto.tokens import sign_document

MEMBER = "site-a"


def _ad(clock: FakeClock, generation: int = 1, **changes: Any) -> StatusAd:
    now = clock.now()
    ad = StatusAd(member_id=MEMBER, instance_id="i", generation=generation, issued_at=now, expires_at=now + 60,
                  healthy=True, capacity=Capacity(total=10, used=1), backend="local",
                  images=ImageSummary.of(f"gh:org/repo{k}" for k in range(300)))
    return ad.model_copy(update=changes)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([PrivateKey.generate()])


@pytest.fixture
def previous(ring: KeyRing, clock: FakeClock) -> StatusAd:
    return verify_status_ad(_ad(clock).sign(ring.signing_key, clock), keys=ring.public_set(), member_id=MEMBER,
                            clock=clock)


def _signed(ring: KeyRing, clock: FakeClock, edit: Callable[[dict[str, Any]], None]) -> str:
    payload = _ad(clock, generation=2).model_dump(mode="json")
    edit(payload)
    return sign_document(ring.signing_key, issuer=MEMBER, payload=payload, clock=clock, ttl=60)


def _unchanged(payload: dict[str, Any]) -> None:
    pass


def test_an_ad_with_the_same_images_shares_the_previous_summary(ring, clock, previous) -> None:
    ad = verify_status_ad(_signed(ring, clock, _unchanged), keys=ring.public_set(), member_id=MEMBER, clock=clock,
                          known=KnownImages.of(previous.images))
    assert ad.images is previous.images
    assert ad.generation == 2
    # The same ad verified without a previous one is equal: sharing changes the cost, not the result.
    alone = verify_status_ad(_signed(ring, clock, _unchanged), keys=ring.public_set(), member_id=MEMBER, clock=clock)
    assert alone == ad


def _set_images(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload.__setitem__("images", value)


def _images(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(payload: dict[str, Any]) -> None:
        payload["images"] = {**payload["images"], **changes}
    return edit


def _reordered(payload: dict[str, Any]) -> None:
    payload["images"]["hashes"] = list(reversed(payload["images"]["hashes"]))


def _one_more(payload: dict[str, Any]) -> None:
    payload["images"]["hashes"] = [*payload["images"]["hashes"], "0123456789abcdef"]
    payload["images"]["total"] += 1


def _total_as_float(payload: dict[str, Any]) -> None:
    payload["images"]["total"] = float(payload["images"]["total"])


# Each of these is validated in full, not shared: a summary that is not exactly the previous one.
NOT_SHARED = [
    pytest.param(_reordered, id="same-hashes-other-order"),
    pytest.param(_one_more, id="one-more-image"),
    pytest.param(_images(total=12345), id="other-total"),
    pytest.param(_total_as_float, id="total-as-a-float"),
    pytest.param(_images(layers=3), id="a-field-this-side-does-not-know"),
    pytest.param(_set_images({"hashes": [], "total": 0}), id="no-images"),
]


@pytest.mark.parametrize("edit", NOT_SHARED)
def test_an_ad_with_other_images_gets_its_own_summary(ring, clock, previous, edit) -> None:
    token = _signed(ring, clock, edit)
    ad = verify_status_ad(token, keys=ring.public_set(), member_id=MEMBER, clock=clock, known=KnownImages.of(previous.images))
    assert ad.images is not previous.images
    assert ad == verify_status_ad(token, keys=ring.public_set(), member_id=MEMBER, clock=clock)


@pytest.mark.parametrize("images", [
    pytest.param({"hashes": "not a list", "total": 1}, id="hashes-not-a-list"),
    pytest.param({"hashes": [], "total": -1}, id="negative-total"),
    pytest.param(["not", "an", "object"], id="not-an-object"),
])
def test_a_malformed_summary_is_refused_with_or_without_a_previous_ad(ring, clock, previous, images) -> None:
    token = _signed(ring, clock, _set_images(images))
    for prior in (KnownImages.of(previous.images), None):
        with pytest.raises(TokenError) as info:
            verify_status_ad(token, keys=ring.public_set(), member_id=MEMBER, clock=clock, known=prior)
        assert info.value.reason == "bad_document"


def _tampered(token: str, payload: dict[str, Any]) -> str:
    """``token``'s header and signature around another payload: what an attacker on the path sends."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(payload, separators=(',', ':')).encode())}.{signature}"


def test_a_tampered_ad_with_the_same_images_is_still_refused(ring, clock, previous) -> None:
    token = _ad(clock, generation=2).sign(ring.signing_key, clock)
    body = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    body["doc"]["capacity"]["used"] = 0  # advertise free room, keep the images the broker has seen
    with pytest.raises(TokenError) as info:
        verify_status_ad(_tampered(token, body), keys=ring.public_set(), member_id=MEMBER, clock=clock,
                         known=KnownImages.of(previous.images))
    assert info.value.reason == "bad_signature"


def test_same_images_do_not_excuse_a_foreign_key_another_member_or_an_expired_ad(ring, clock, previous) -> None:
    other = KeyRing([PrivateKey.generate()])
    cases = {
        "unknown_key": _ad(clock, generation=2).sign(other.signing_key, clock),
        "wrong_issuer": sign_document(ring.signing_key, issuer="site-b", payload=_ad(clock).model_dump(mode="json"),
                                      clock=clock, ttl=60),
        "wrong_member": sign_document(ring.signing_key, issuer=MEMBER,
                                      payload={**_ad(clock).model_dump(mode="json"), "member_id": "site-b"},
                                      clock=clock, ttl=60),
    }
    for reason, token in cases.items():
        with pytest.raises(TokenError) as info:
            verify_status_ad(token, keys=ring.public_set(), member_id=MEMBER, clock=clock, known=KnownImages.of(previous.images))
        assert info.value.reason == reason, reason
    stale = _ad(clock, generation=2).sign(ring.signing_key, clock)
    clock.advance(120)
    with pytest.raises(TokenError) as info:
        verify_status_ad(stale, keys=ring.public_set(), member_id=MEMBER, clock=clock, known=KnownImages.of(previous.images))
    assert info.value.reason == "expired"


@pytest.mark.parametrize(("known", "listed"), [
    pytest.param(["a", "b"], ["a\x00b"], id="two-hashes-vs-one-holding-their-join"),
    pytest.param([], [""], id="no-hash-vs-one-empty-hash"),
    pytest.param(["", ""], [""], id="two-empty-vs-one-empty"),
], )
def test_the_digest_tells_apart_lists_that_join_alike(ring, clock, known, listed) -> None:
    memo = KnownImages.of(ImageSummary(hashes=known, total=5))
    assert memo is not None
    token = _signed(ring, clock, _set_images({"hashes": listed, "total": 5}))
    ad = verify_status_ad(token, keys=ring.public_set(), member_id=MEMBER, clock=clock, known=memo)
    assert ad.images.hashes == listed and ad.images is not memo.summary


def test_a_summary_whose_hashes_hold_a_nul_is_never_shared() -> None:
    assert KnownImages.of(ImageSummary(hashes=["a\x00b"], total=1)) is None
