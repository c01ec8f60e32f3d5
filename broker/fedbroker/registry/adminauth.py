"""Admin tokens: their format (a prefix secret scanners spot, 256 random bits) and the principal a valid one yields.

Handlers call ``fedbroker.web.adminauth.require_admin`` first thing; this module holds the
token format and the principal it yields.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

ADMIN_TOKEN_PREFIX = "fedadmin_"


def new_admin_secret() -> str:
    """A fresh admin token: a prefix that secret scanners can spot, then 256 random bits."""
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AdminPrincipal:
    """Who is calling: the token's id (the audit actor), its name, scopes and expiry."""

    name: str
    token_id: str
    scopes: frozenset[str]
    expires_at: float = float("inf")

    @property
    def actor(self) -> str:
        # The id, not the name: names are free-form and not unique, so only the id says which
        # token acted (and which one to revoke). The name is in GET /api/v1/admin-tokens.
        return f"admin:{self.token_id}"
