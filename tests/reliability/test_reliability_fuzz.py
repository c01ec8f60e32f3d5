"""Property-based fuzzing of the broker and member APIs from their OpenAPI 3.1 files.

Schemathesis turns each operation of specs/openapi/{broker,member}-v1.yaml into a Hypothesis
strategy of requests (valid and edge-case parameters and bodies); they are sent over HTTP to
a real broker and a real member agent. Every answer must come within the timeout and never
be a 5xx. Half the broker requests carry a valid admin token and every member request a valid
broker signature, so generated input reaches the handlers instead of stopping at
authentication. Examples are derandomized (the same every run); raise the count with
``FEDERATION_FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
from schemathesis.core import NotSet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedbroker.demo.run import DemoFederation
from fedproto.keys import KeyRing

from attackkit import Signer

pytestmark = pytest.mark.slow

SPECS = Path(__file__).resolve().parents[2] / "specs" / "openapi"
EXAMPLES = int(os.environ.get("FEDERATION_FUZZ_EXAMPLES", "20"))
TIMEOUT = 10.0
BROKER = schemathesis.openapi.from_path(str(SPECS / "broker-v1.yaml"))
MEMBER = schemathesis.openapi.from_path(str(SPECS / "member-v1.yaml"))


def _operations(schema: Any) -> dict[str, Any]:
    ops = (result.ok() for result in schema.get_all_operations())
    return {f"{op.method.upper()} {op.path}": op for op in ops}


BROKER_OPS = _operations(BROKER)
MEMBER_OPS = _operations(MEMBER)
# Unsigned member routes need no signature; the rest get a valid one.
UNSIGNED = ("/health", "/metrics", "/.well-known/jwks.json")


def _request_parts(case: Any) -> tuple[str, bytes, dict[str, str]]:
    """Path+query, body and headers of a generated case, exactly as they will be sent."""
    query = urlencode(case.query or {}, doseq=True)
    path_qs = case.formatted_path + (f"?{query}" if query else "")
    headers = {k: str(v) for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    body = b""
    if not isinstance(case.body, NotSet):
        body = json.dumps(case.body).encode()
        headers["Content-Type"] = "application/json"
    return path_qs, body, headers


def _send(base: str, method: str, path_qs: str, body: bytes, headers: dict[str, str]) -> int:
    """The status of one request; event streams are not read (a launch may run for minutes)."""
    with requests.request(method, base + path_qs, data=body or None, headers=headers, timeout=TIMEOUT,
                          stream=True, allow_redirects=False) as resp:
        return resp.status_code


def _fuzz(op: Any, send: Callable[[Any, bool], int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(), flag=st.booleans())
    def run(case: Any, flag: bool) -> None:
        status = send(case, flag)
        assert status < 500, (status, case.method, case.formatted_path, case.query, case.body)

    run()


@pytest.fixture(scope="module")
def fuzz_federation(small_federation: DemoFederation) -> DemoFederation:
    return small_federation


@pytest.mark.parametrize("name", sorted(BROKER_OPS))
def test_broker_api_never_5xx(fuzz_federation: DemoFederation, name: str) -> None:
    fed = fuzz_federation

    def send(case: Any, authorized: bool) -> int:
        path_qs, body, headers = _request_parts(case)
        if authorized:
            headers["Authorization"] = f"Bearer {fed.admin_token}"
        return _send(fed.broker_url, case.method, path_qs, body, headers)

    _fuzz(BROKER_OPS[name], send)


@pytest.mark.parametrize("name", sorted(MEMBER_OPS))
def test_member_api_never_5xx(fuzz_federation: DemoFederation, name: str) -> None:
    fed = fuzz_federation
    agent = next(iter(fed.members.values()))
    signer = Signer(KeyRing.load_or_create(fed.broker_config.parent / "keys").signing_key, "demo", agent.member_id)

    def send(case: Any, _flag: bool) -> int:
        path_qs, body, headers = _request_parts(case)
        if case.path not in UNSIGNED:
            headers["Authorization"] = f"Bearer {signer.token(case.method.upper(), path_qs, body)}"
        return _send(agent.agent_url, case.method, path_qs, body, headers)

    _fuzz(MEMBER_OPS[name], send)
