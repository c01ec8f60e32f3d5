"""Wire models: unknown fields rejected when built here and ignored when received, frozen, BinderHub's recorded events parse, status ads verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from fedproto.datasets import Dataset
from fedproto.errors import TokenError
from fedproto.keys import KeyRing, PrivateKey
from fedproto.launch import LaunchEvent, LaunchRequest, parse_sse_data
from fedproto.location import Location
from fedproto.status import Capacity, ImageSummary, StatusAd, verify_status_ad
from fedproto.tokens import sign_document

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "binderhub"


def _recorded_events() -> list[dict]:
    events = []
    for path in sorted(FIXTURES.glob("stream-*.txt")) + [FIXTURES / "ratelimit-headers.txt"]:
        for line in path.read_text().splitlines():
            _, _, rest = line.strip().partition("data: ")
            if rest.startswith("{"):
                try:
                    events.append(json.loads(rest))
                except json.JSONDecodeError:
                    continue  # a line the recording cut short
    return events


def test_every_recorded_binderhub_event_parses() -> None:
    events = _recorded_events()
    assert len(events) > 20
    for raw in events:
        event = LaunchEvent.model_validate(raw)
        assert event.to_json() == raw  # nothing lost, nothing added


def test_ready_fixture_has_every_field_a_launch_page_needs() -> None:
    ready = LaunchEvent.model_validate(json.loads((FIXTURES / "ready-gh-fakebuild.json").read_text()))
    assert ready.terminal and ready.url and ready.url.endswith("/") and ready.token
    frame = ready.sse()
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert parse_sse_data(frame.split(b"\n")[0]) == ready.to_json()
    assert parse_sse_data(b":keepalive") is None


def test_unknown_fields_are_rejected_and_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        LaunchRequest(provider="gh", spec="a/b/c", launch_id="abcdefgh", surprise=1)
    req = LaunchRequest(provider="gh", spec="a/b/c", launch_id="abcdefgh")
    with pytest.raises(ValidationError):
        req.provider = "gl"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Location(lat=91)


def test_dataset_matching_exact_prefix_and_doi_spelling() -> None:
    assert Dataset(id="10.5281/zenodo.123").matches("https://doi.org/10.5281/ZENODO.123")
    assert not Dataset(id="10.5281/zenodo.123").matches("10.5281/zenodo.1234")
    assert Dataset(id="s3://bucket/climate/", prefix=True).matches("s3://bucket/climate/era5")
    assert not Dataset(id="s3://bucket/climate/", prefix=True).matches("s3://bucket/other")


def test_location_distance() -> None:
    berlin, paris = Location(lat=52.52, lon=13.405), Location(lat=48.8566, lon=2.3522)
    assert 870 < berlin.distance_km(paris) < 890
    assert berlin.distance_km(Location(region="eu")) is None


def _ad(clock, member_id: str = "site-a", **changes) -> StatusAd:
    base = dict(
        member_id=member_id, instance_id="i1", generation=3, issued_at=clock.now(), expires_at=clock.now() + 60,
        healthy=True, capacity=Capacity(total=10, used=4, building=1), backend="local",
        images=ImageSummary.of(["gh:org/repo"]), datasets=[Dataset(id="10.5281/zenodo.1")],
    )
    base.update(changes)
    return StatusAd(**base)


def test_status_ad_round_trip(clock) -> None:
    ring = KeyRing([PrivateKey.generate()])
    ad = verify_status_ad(_ad(clock).sign(ring.signing_key, clock), keys=ring.public_set(), member_id="site-a", clock=clock)
    assert ad.capacity.free == 5 and ad.images.has("gh:org/repo") and not ad.images.has("gh:org/other")


def test_status_ad_for_another_member_is_refused(clock) -> None:
    ring = KeyRing([PrivateKey.generate()])
    # Signed as site-a (iss) but describing site-b: the key does not speak for site-b.
    token = sign_document(ring.signing_key, issuer="site-a", payload=_ad(clock, "site-b").model_dump(mode="json"),
                          clock=clock, ttl=60)
    with pytest.raises(TokenError) as info:
        verify_status_ad(token, keys=ring.public_set(), member_id="site-a", clock=clock)
    assert info.value.reason == "wrong_member"
    with pytest.raises(TokenError) as info:
        verify_status_ad(token, keys=ring.public_set(), member_id="site-b", clock=clock)
    assert info.value.reason == "wrong_issuer"


def test_status_ad_signed_by_another_key_or_expired_is_refused(clock) -> None:
    ring, other = KeyRing([PrivateKey.generate()]), KeyRing([PrivateKey.generate()])
    token = _ad(clock).sign(other.signing_key, clock)
    with pytest.raises(TokenError) as info:
        verify_status_ad(token, keys=ring.public_set(), member_id="site-a", clock=clock)
    assert info.value.reason == "unknown_key"
    token = _ad(clock).sign(ring.signing_key, clock)
    clock.advance(120)
    with pytest.raises(TokenError) as info:
        verify_status_ad(token, keys=ring.public_set(), member_id="site-a", clock=clock)
    assert info.value.reason == "expired"


def test_status_ad_from_a_newer_member_ignores_unknown_fields_but_checks_known_ones(clock) -> None:
    # A member one minor version ahead adds fields; this broker must still read its ad
    # (before, extra="forbid" made it look unhealthy). Known fields stay checked.
    ring = KeyRing([PrivateKey.generate()])
    payload = {**_ad(clock).model_dump(mode="json"), "gpus": {"total": 2}}
    payload["capacity"] = {**payload["capacity"], "gpus": 2}
    token = sign_document(ring.signing_key, issuer="site-a", payload=payload, clock=clock, ttl=60)
    ad = verify_status_ad(token, keys=ring.public_set(), member_id="site-a", clock=clock)
    assert ad == _ad(clock) and "gpus" not in ad.model_dump()
    bad = {**payload, "capacity": {"total": -1, "used": 0}}
    token = sign_document(ring.signing_key, issuer="site-a", payload=bad, clock=clock, ttl=60)
    with pytest.raises(TokenError) as info:
        verify_status_ad(token, keys=ring.public_set(), member_id="site-a", clock=clock)
    assert info.value.reason == "bad_document"


def test_received_models_drop_unknown_fields_at_every_depth_but_events_keep_theirs(clock) -> None:
    # A status ad is received with pydantic's extra="ignore", which reaches every nested model;
    # launch events keep fields they do not know (a newer BinderHub's), so they must not get it.
    payload = {**_ad(clock).model_dump(mode="json"), "gpus": 2}
    payload["capacity"] = {**payload["capacity"], "gpus": 2}
    payload["location"] = {**payload["location"], "building": "B4"}
    ad = StatusAd.received(payload)
    assert ad == _ad(clock) and ad == StatusAd.received_json(json.dumps(payload))
    event = LaunchEvent.received({"phase": "ready", "url": "https://m.example/u/", "new_field": 1})
    assert event.to_json()["new_field"] == 1
    assert LaunchEvent.received_json('{"phase": "built", "x": [1]}').to_json()["x"] == [1]


def test_a_model_mixing_both_rules_for_unknown_fields_cannot_be_received() -> None:
    from pydantic import ConfigDict

    from fedproto.wire import WireModel

    class Keeps(WireModel):
        model_config = ConfigDict(frozen=True, extra="allow")

    class Mixed(WireModel):
        inner: Keeps

    with pytest.raises(TypeError, match="keep unknown fields and models that forbid"):
        Mixed.received({"inner": {}})


def test_a_trusted_model_is_the_one_model_construct_builds_and_stays_frozen() -> None:
    from fedproto.routing import Candidate, RouteDecision

    values = dict(member_id="m1", rank=1, routable=True, cost=12.5, parts={"load": 2.0}, reason="chosen")
    fast, slow = Candidate.trusted(**values), Candidate.model_construct(**values)
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json() and fast.model_fields_set == slow.model_fields_set
    with pytest.raises(ValidationError):
        fast.rank = 2  # type: ignore[misc]
    decision = RouteDecision.trusted(decision_id="d", provider="gh", spec="o/r/HEAD", repo_key="gh:o/r",
                                     data=[], client_region=None, candidates=[fast])
    assert decision.chosen == "m1" and RouteDecision.model_validate_json(decision.model_dump_json()) == decision
    # A field left out is filled with its default, as model_construct does, not left missing.
    partial = Candidate.trusted(member_id="m2", rank=2, routable=False, cost=None, reason="full")
    assert partial.parts == {} and partial.model_dump()["parts"] == {}
