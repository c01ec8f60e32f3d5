"""User launches feed the launch SLO through the relay: per member attempts, overall client launches;
a repository's own error is nobody's SLO, and canaries never appear in it (test_canary_runner)."""

from __future__ import annotations

from typing import Any

from test_relay import Fed, fed, launch  # noqa: F401 - the relay tests' federation fixture


def slo(summary: dict[str, Any], member_id: str | None = None) -> dict[str, Any]:
    windows = summary["slo"] if member_id is None else next(m for m in summary["members"] if m["id"] == member_id)["slo"]
    return {w["window"]: (w["launches"], w["ready"]) for w in windows}


async def test_failover_counts_against_the_failing_member_and_the_launch_reached_ready(fed: Fed) -> None:  # noqa: F811
    client, _ = await fed(("bad", "failed503"), ("good", "ok"))
    events, _ = await launch(client)
    assert events[-1]["phase"] == "ready"
    summary = await (await client.get("/api/v1/federation")).json()
    assert slo(summary, "bad") == {"1h": (1, 0), "24h": (1, 0)}
    assert slo(summary, "good") == {"1h": (1, 1), "24h": (1, 1)}
    assert slo(summary) == {"1h": (1, 1), "24h": (1, 1)}
    overall = summary["slo"][0]
    assert overall["ready_share"] == 1.0 and overall["p50_time_to_ready"] is not None


async def test_a_launch_that_fails_everywhere_counts_once_overall(fed: Fed) -> None:  # noqa: F811
    client, _ = await fed(("a", "failed503"), ("b", "http500"))
    events, _ = await launch(client)
    assert events[-1]["phase"] == "failed"
    summary = await (await client.get("/api/v1/federation")).json()
    assert slo(summary) == {"1h": (1, 0), "24h": (1, 0)}
    assert slo(summary, "a")["1h"] == slo(summary, "b")["1h"] == (1, 0)


async def test_a_repository_error_is_nobodys_slo(fed: Fed) -> None:  # noqa: F811
    client, _ = await fed(("m", "failed404"))
    events, _ = await launch(client)
    assert events[-1]["phase"] == "failed"
    summary = await (await client.get("/api/v1/federation")).json()
    assert slo(summary) == slo(summary, "m") == {"1h": (0, 0), "24h": (0, 0)}
