"""Datasets are routed on only where the registry says so; status ads narrow, never widen; providers' policies hold."""

from __future__ import annotations

import json
import random
from types import MappingProxyType

import pytest

from fedproto.clock import FakeClock
from fedproto.datasets import Dataset
from fedproto.keys import KeyRing, PrivateKey
from fedproto.member import MemberRecord, MemberState
from fedproto.repospec import RepoSpec
from fedproto.status import Capacity, StatusAd
from fedproto.tokens import sign_request

from fedbroker.config import HealthSettings, RoutingSettings
from fedbroker.registry.datasetpolicy import DatasetPolicy, normalised_rule
from fedbroker.registry.service import build_snapshot
from fedbroker.routing.claims import capped_ad, held_datasets
from fedbroker.routing.dispatcher import nothing_routable_message
from fedbroker.routing.health import MemberHealth
from fedbroker.routing.index import RoutingIndex
from fedbroker.routing.rank import RouteRequest, rank

KEYS = KeyRing([PrivateKey.generate(created=1.0)])
DOI = "10.5281/zenodo.42"


def _ds(id: str, prefix: bool = False, size: int | None = None) -> Dataset:
    return Dataset(id=id, prefix=prefix, size_bytes=size)


@pytest.mark.parametrize(
    "declared, advertised, held",
    [
        pytest.param([_ds(DOI)], None, [DOI], id="no-ad-claim-registry-stands"),
        pytest.param([_ds(DOI)], [], [DOI], id="empty-ad-list-registry-stands"),
        pytest.param([], [_ds("10.", True), _ds("s", True), _ds("h", True)], [], id="lying-ad-adds-nothing"),
        pytest.param([_ds(DOI), _ds("10.1/other")], [_ds(DOI)], [DOI], id="ad-narrows-to-what-it-lists"),
        pytest.param([_ds("10.5281/", True)], [_ds(DOI)], [DOI], id="ad-narrows-a-prefix-to-one-dataset"),
        pytest.param([_ds(DOI)], [_ds("10.", True)], [DOI], id="ad-prefix-covering-keeps-declared"),
    ],
)
def test_ads_narrow_never_widen(declared: list[Dataset], advertised: list[Dataset] | None, held: list[str]) -> None:
    assert [d.id for d in held_datasets(declared, advertised)] == held


def test_capacity_is_capped() -> None:
    ad = StatusAd(member_id="m", instance_id="i", generation=1, issued_at=0, expires_at=60, healthy=True,
                  capacity=Capacity(total=100_000, used=1), backend="t")
    assert capped_ad(ad, 10).capacity == Capacity(total=10, used=1)
    assert capped_ad(ad, 200_000) is ad


def test_serving_policy_intersects_every_rule() -> None:
    policy = DatasetPolicy.of([
        normalised_rule("doi:10.5281/ZENODO.42", prefix=False, holders=["a"], servers=["a", "b"]),
        normalised_rule("10.5281/", prefix=True, holders=[], servers=["b", "c"]),
        normalised_rule("10.1/open", prefix=False, holders=["c"], servers=None),
    ])
    limit = policy.serving([DOI])
    assert limit is not None and limit.allowed == {"b"}
    assert DOI in limit.reason and "allows: b" in limit.reason
    assert policy.serving(["10.1/open"]) is None
    assert policy.serving(["10.9/unknown"]) is None
    assert policy.holdings() == {"a": (Dataset(id=DOI),), "c": (Dataset(id="10.1/open"),)}


def _route(rules: list, ad_datasets: dict[str, list[Dataset]], data: tuple[str, ...], *, down: tuple[str, ...] = ()):
    """Three healthy members a, b, c (ads as given) under the declarations ``rules``: the launch ranked
    by ``rank`` and by the routing index (through ``DatasetPolicy.serving``), which must agree."""
    clock = FakeClock()
    records, views = [], {}
    for mid in ("a", "b", "c"):
        records.append(MemberRecord(id=mid, display_name=mid, agent_url=f"https://{mid}.example", public_url=f"https://{mid}.example",
                                    state=MemberState.active, jwks=KEYS.public_set().to_jwks(), created_at=0, updated_at=0))
        h = MemberHealth(mid, HealthSettings(), clock, random.Random(0))
        if mid not in down:
            h.record_poll(StatusAd(member_id=mid, instance_id="i", generation=1, issued_at=clock.now() - 1,
                                   expires_at=clock.now() + 60,
                                   healthy=True, capacity=Capacity(total=10, used=0), backend="t",
                                   datasets=ad_datasets.get(mid, [])))
        views[mid] = h.view()
    snapshot = build_snapshot(1, records, rules)
    request = RouteRequest(repo=RepoSpec.parse("gh", "org/repo/HEAD"), data=data)
    settings = RoutingSettings(near_equal=0.0)
    ranked = rank(snapshot, views, request, settings, decision_id="d", detail=3)
    index = RoutingIndex(settings)
    index.update(snapshot, views, None)
    limit = snapshot.datasets.serving(request.needed_datasets())
    indexed = index.decide(request, "d", 3, limit=limit)
    assert [c.member_id for c in indexed.candidates if c.routable] == [c.member_id for c in ranked.candidates if c.routable]
    assert {(c.member_id, c.reason) for c in indexed.candidates if not c.routable} == {
        (c.member_id, c.reason) for c in ranked.candidates if not c.routable}
    explained = index.explain(request, "d", limit=limit)
    assert explained.chosen == ranked.chosen
    return ranked


def test_a_lying_ad_does_not_win_dataset_launches() -> None:
    rules = [normalised_rule(DOI, prefix=False, holders=["b"], servers=None)]
    liar = {"a": [_ds("10.", True), _ds("s", True), _ds("h", True)]}
    decision = _route(rules, liar, (DOI,))
    assert decision.chosen == "b"
    assert "does not store the data" in next(c.reason for c in decision.candidates if c.member_id == "a")


def test_a_dataset_with_a_policy_launches_only_at_allowed_members() -> None:
    rules = [normalised_rule(DOI, prefix=False, holders=["a"], servers=["a", "c"])]
    decision = _route(rules, {}, (DOI,))
    assert {c.member_id for c in decision.candidates if c.routable} == {"a", "c"}
    assert decision.chosen == "a"


def test_no_allowed_member_routable_fails_closed_with_the_policy_named() -> None:
    rules = [normalised_rule(DOI, prefix=False, holders=["a"], servers=["a"])]
    decision = _route(rules, {}, (DOI,), down=("a",))
    assert decision.chosen is None
    message = nothing_routable_message(decision)
    assert "not allowed to serve 10.5281/zenodo.42 (its data provider allows: a)" in message
    # Launches needing no dataset are untouched by the policy.
    assert _route(rules, {}, (), down=("a",)).chosen in {"b", "c"}


# -- the API: admins and dataset owners ------------------------------------------------------


async def test_admin_declares_and_routing_snapshot_follows(broker, admin_headers, do_enroll, mint_token, member_kit):
    assert (await do_enroll(broker, member_kit("site-a"), await mint_token(broker, admin_headers))).status == 201
    body = {"id": "https://doi.org/10.5281/ZENODO.42", "holders": ["site-a"], "servers": ["site-a"]}
    resp = await broker.post("/api/v1/datasets", json=body, headers=admin_headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["id"] == DOI
    listed = await (await broker.get("/api/v1/datasets", headers=admin_headers)).json()
    assert listed["datasets"][0]["servers"] == ["site-a"]
    from fedbroker.appkeys import SNAPSHOT

    snapshot = broker.app[SNAPSHOT].current
    assert snapshot.members["site-a"].declared == (Dataset(id=DOI),)
    assert snapshot.datasets.serving([DOI]).allowed == {"site-a"}
    unknown = await broker.post("/api/v1/datasets", json={"id": DOI, "holders": ["nobody"]}, headers=admin_headers)
    assert unknown.status == 400 and (await unknown.json())["error"] == "unknown_member"
    gone = await broker.delete("/api/v1/datasets", params={"id": DOI}, headers=admin_headers)
    assert gone.status == 200
    assert broker.app[SNAPSHOT].current.datasets.serving([DOI]) is None


async def test_dataset_owner_declares_only_its_own_datasets(broker, admin_headers, clock):
    owner_key = PrivateKey.generate()
    jwks = KeyRing([owner_key]).public_set().to_jwks()
    made = await broker.post("/api/v1/dataset-owners", headers=admin_headers,
                             json={"id": "zenodo", "display_name": "Zenodo", "jwks": jwks, "prefixes": ["10.5281/zenodo."]})
    assert made.status == 201, await made.text()
    from fedbroker.appkeys import CONFIG

    audience = broker.app[CONFIG].broker_id

    async def signed(body: dict) -> int:
        raw = json.dumps(body).encode()
        token = sign_request(owner_key, issuer="zenodo", audience=audience, method="POST", path_qs="/api/v1/datasets",
                             body=raw, clock=clock)
        resp = await broker.post("/api/v1/datasets", data=raw,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        return resp.status

    assert await signed({"id": DOI, "servers": []}) == 200
    assert await signed({"id": "10.6084/m9.figshare.1", "servers": []}) == 403  # not under its prefix
    forged = sign_request(PrivateKey.generate(), issuer="zenodo", audience=audience, method="POST",
                          path_qs="/api/v1/datasets", body=b"{}", clock=clock)
    resp = await broker.post("/api/v1/datasets", data=b"{}", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status == 401
    audit_actions = []
    from fedbroker.appkeys import REGISTRY

    async with broker.app[REGISTRY].store.read() as tx:
        audit_actions = [(e["actor"], e["action"]) for e in await tx.audit_entries()]
    assert ("owner:zenodo", "dataset.declare") in audit_actions


async def test_capacity_cap_is_an_admin_field(broker, admin_headers, do_enroll, mint_token, member_kit):
    assert (await do_enroll(broker, member_kit("site-b"), await mint_token(broker, admin_headers))).status == 201
    resp = await broker.patch("/api/v1/members/site-b", json={"max_capacity": 4}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["max_capacity"] == 4


def test_snapshot_holds_declarations_per_member() -> None:
    rec = MemberRecord(id="a", display_name="a", agent_url="https://a.example", public_url="https://a.example",
                       state=MemberState.active, jwks=KEYS.public_set().to_jwks(), created_at=0, updated_at=0)
    snapshot = build_snapshot(3, [rec], [normalised_rule("s3://bucket/", prefix=True, holders=["a", "gone"], servers=None)])
    assert snapshot.members["a"].declared == (Dataset(id="s3://bucket", prefix=True),)
    assert isinstance(snapshot.members, MappingProxyType)
