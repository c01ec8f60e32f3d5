"""The error base both sides share, and its one mapping to HTTP."""

from __future__ import annotations

import pytest

from fedproto import errors as e
from fedproto.version import ProtocolVersionError


@pytest.mark.parametrize(("error", "status"), [
    (e.InvalidRequest("x"), 400), (e.Unauthenticated("x"), 401), (e.Forbidden("x"), 403), (e.NotFound("x"), 404),
    (e.Conflict("x"), 409), (e.TooLarge("x"), 413), (e.RateLimited("x"), 429), (e.Unavailable("x"), 503),
    (e.TokenError("x"), 401), (e.SpecError("x"), 400), (e.SpecError("x", reason="unknown_provider"), 404),
    (e.KeyMaterialError("x"), 400), (ProtocolVersionError("x"), 400), (e.FederationError("x"), 500),
])
def test_every_kind_has_one_status(error: e.FederationError, status: int) -> None:
    assert e.http_status(error) == status


def test_reason_message_and_retry_after() -> None:
    error = e.Conflict("member a exists", reason="member_exists")
    assert (error.reason, error.message) == ("member_exists", "member a exists")
    assert e.NotFound("gone").reason == "not_found"
    assert e.retry_after(e.Unavailable("later", retry_after=30)) == 30 and e.retry_after(error) is None
