"""The admin CLI's HTTP calls to a running broker (stdlib only: the CLI stays synchronous)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fedproto.tls import CABundleError, client_context, describe_failure, resolve_ca_bundle


class AdminClientError(Exception):
    """The broker refused a call, or could not be reached; the message says which and why."""


class AdminClient:
    """Calls ``/api/v1`` with an admin bearer token."""

    def __init__(self, url: str, token: str, timeout: float = 30.0, ca_bundle: str | None = None) -> None:
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # The same trust as every other client: --ca-bundle / $FEDERATION_CA_BUNDLE, else the system store.
        try:
            self._ssl = client_context(resolve_ca_bundle(ca_bundle))
        except CABundleError as exc:
            raise AdminClientError(str(exc)) from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AdminClientError(_describe_http_error(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            text = describe_failure(reason) if isinstance(reason, BaseException) else str(reason)
            raise AdminClientError(f"cannot reach the broker at {self.base}: {text}") from None

    def list_members(self) -> Any:
        return self.call("GET", "/api/v1/members")

    def get_member(self, member_id: str) -> Any:
        return self.call("GET", f"/api/v1/members/{_seg(member_id)}")

    def member_action(self, member_id: str, action: str) -> Any:
        return self.call("POST", f"/api/v1/members/{_seg(member_id)}/{action}")

    def remove_member(self, member_id: str) -> Any:
        return self.call("DELETE", f"/api/v1/members/{_seg(member_id)}")

    def member_health(self, member_id: str) -> Any:
        return self.call("GET", f"/api/v1/members/{_seg(member_id)}/health")

    def broker_keys_status(self) -> Any:
        return self.call("GET", "/api/v1/broker-keys/status")

    def create_admin_token(self, name: str, scopes: list[str], ttl: float) -> Any:
        return self.call("POST", "/api/v1/admin-tokens", {"name": name, "scopes": scopes, "ttl": ttl})

    def create_enroll_token(self, name: str, ttl: float, auto_approve: bool) -> Any:
        return self.call("POST", "/api/v1/enroll-tokens", {"name": name, "ttl": ttl, "auto_approve": auto_approve})

    def list_tokens(self, kind: str) -> Any:
        """``kind`` is ``admin-tokens`` or ``enroll-tokens``."""
        return self.call("GET", f"/api/v1/{kind}")

    def revoke_token(self, kind: str, token_id: str) -> Any:
        return self.call("DELETE", f"/api/v1/{kind}/{_seg(token_id)}")


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _describe_http_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return f"{exc.code} {body['error']}: {body['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{exc.code} {exc.reason}"
