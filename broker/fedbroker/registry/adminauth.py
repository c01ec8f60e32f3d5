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
    """Who is calling: the token's name (the audit actor), its id and scopes."""

    name: str
    token_id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"
