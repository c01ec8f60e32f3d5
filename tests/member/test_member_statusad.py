"""The signed status ad, /health, the JWKS and /metrics."""

from __future__ import annotations

from typing import Any

from agentkit import MEMBER_ID, FakeBackend, Signer, member_config

from fedmember.app import make_app
from fedproto.clock import SystemClock
from fedproto.keys import PublicKeySet
from fedproto.status import HealthCheck, verify_status_ad


async def _ad(client: Any, signer: Signer) -> Any:
    resp = await client.get("/api/v1/status", headers=signer.headers("GET", "/api/v1/status"))
    assert resp.status == 200
    signed = (await resp.json())["signed"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    return verify_status_ad(signed, keys=PublicKeySet.from_jwks(jwks), member_id=MEMBER_ID, clock=SystemClock())


async def test_status_ad_verifies_and_describes_the_member(aiohttp_client: Any, tmp_path: Any, broker_ring: Any, signer: Signer) -> None:
    config = member_config(
        tmp_path,
        status_ttl=30,
        datasets=[{"id": "10.5281/zenodo.1", "size_bytes": 10}],
        location={"lat": 52.0, "lon": 5.0, "country": "NL"},
    )
    client = await aiohttp_client(make_app(config, backend=FakeBackend(), broker_keys=broker_ring.public_set()))
    ad = await _ad(client, signer)
    assert ad.capacity.total == 3 and ad.capacity.used == 0
    assert [d.id for d in ad.datasets] == ["10.5281/zenodo.1"]
    assert ad.location.country == "NL"
    assert ad.images.has("gh:org/repo") and ad.images.total == 1
    assert ad.healthy and ad.backend == "fake" and ad.providers == ["git", "gh"]
    assert ad.expires_at - ad.issued_at == 30
    assert "fedmember" in ad.versions
    again = await _ad(client, signer)
    assert again.instance_id == ad.instance_id and again.generation == ad.generation + 1


class SickBackend(FakeBackend):
    async def health(self) -> list[HealthCheck]:
        return [HealthCheck(service="Fake", ok=False)]


class BrokenBackend(FakeBackend):
    async def health(self) -> list[HealthCheck]:
        raise RuntimeError("boom")


async def test_health_is_503_when_a_check_fails(aiohttp_client: Any, config: Any) -> None:
    client = await aiohttp_client(make_app(config, backend=SickBackend()))
    resp = await client.get("/health")
    assert resp.status == 503
    assert await resp.json() == {"ok": False, "checks": [{"service": "Fake", "ok": False, "detail": {}}]}
    assert (await client.head("/health")).status == 503


async def test_health_survives_a_raising_backend(aiohttp_client: Any, config: Any) -> None:
    client = await aiohttp_client(make_app(config, backend=BrokenBackend()))
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"][0]["service"] == "Backend" and "boom" not in str(body)


async def test_health_ok_and_head(agent: Any) -> None:
    resp = await agent.get("/health")
    assert resp.status == 200 and (await resp.json())["ok"] is True
    assert (await agent.head("/health")).status == 200


async def test_metrics_have_zeroed_series(agent: Any) -> None:
    text = await (await agent.get("/metrics")).text()
    assert 'fedmember_launches_total{outcome="timeout"} 0.0' in text
    assert 'fedmember_auth_failures_total{reason="replayed"} 0.0' in text
    assert "fedmember_servers_running 0.0" in text


async def test_jwks_is_public_keys_only(agent: Any) -> None:
    jwks = await (await agent.get("/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) == 1 and "d" not in jwks["keys"][0]


async def test_dataset_edits_in_member_toml_reach_the_next_ad_without_a_restart(
    aiohttp_client: Any, tmp_path: Any, broker_ring: Any, signer: Signer
) -> None:
    import os

    import tomli_w

    from fedmember.config import load_config

    member_config(tmp_path)  # the keys
    document = {"member": {"id": MEMBER_ID, "agent_url": "http://127.0.0.1:1", "dev": True,
                           "datasets": [{"id": "10.5281/zenodo.1", "mount_path": "/srv/old"}]},
                "backend": {"kind": "local"}}
    path = tmp_path / "member.toml"
    path.write_text(tomli_w.dumps(document))
    backend = FakeBackend()
    client = await aiohttp_client(make_app(load_config(path), backend=backend, broker_keys=broker_ring.public_set()))
    assert [d.mount_path for d in (await _ad(client, signer)).datasets] == ["/srv/old"]

    document["member"]["datasets"] = [{"id": "10.5281/zenodo.1", "mount_path": "/srv/new"}, {"id": "10.5281/zenodo.2"}]
    path.write_text(tomli_w.dumps(document))
    os.utime(path, ns=(1, 2_000_000_000))  # a distinct mtime even on a coarse clock
    ad = await _ad(client, signer)
    assert [(d.id, d.mount_path) for d in ad.datasets] == [("10.5281/zenodo.1", "/srv/new"), ("10.5281/zenodo.2", None)]
    assert [d.mount_path for d in backend.context.datasets] == ["/srv/new", None]  # what the backend mounts

    path.write_text("this is [not toml")
    os.utime(path, ns=(1, 3_000_000_000))
    assert [d.mount_path for d in (await _ad(client, signer)).datasets] == ["/srv/new", None]  # kept
