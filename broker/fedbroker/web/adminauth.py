"""Admin authentication of a request: a bearer admin token, looked up by its hash, checked for
expiry and scope.

Handlers call :func:`require_admin` first thing::

    admin = await require_admin(request, "members:write")
    ...  # admin.actor ("admin:<token id>") is written to the audit log

Missing, unknown, revoked or expired tokens are 401; a valid token without the scope is 403.
Admin calls are rare, so the token is looked up in the database on each call: a
revoked or expired token stops working at once, on every replica.
"""

from __future__ import annotations

from aiohttp import web

from fedproto.errors import TokenError
from fedproto.tokens import bearer

from ..appkeys import CLOCK, REGISTRY
from ..errors import Forbidden, Unauthorized
from ..registry.adminauth import ADMIN_TOKEN_PREFIX, AdminPrincipal
from ..registry.store import ADMIN_SCOPES

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fedbroker-admin"'}


async def require_admin(request: web.Request, scope: str) -> AdminPrincipal:
    """The caller's admin identity, or 401/403. ``scope`` is one of ``ADMIN_SCOPES``."""
    assert scope in ADMIN_SCOPES, scope
    try:
        secret = bearer(request.headers.get("Authorization"))
    except TokenError as exc:
        raise Unauthorized(exc.message, reason="missing_token", headers=_CHALLENGE) from None
    if not secret.startswith(ADMIN_TOKEN_PREFIX):
        raise Unauthorized("that is not an admin token", reason="unknown_token", headers=_CHALLENGE)
    registry = request.app[REGISTRY]
    async with registry.store.read() as tx:
        row = await tx.admin_token(secret)
    if row is None:
        raise Unauthorized("unknown admin token", reason="unknown_token", headers=_CHALLENGE)
    if row.revoked_at is not None:
        raise Unauthorized(f"admin token {row.id} was revoked", reason="revoked_token", headers=_CHALLENGE)
    if row.expires_at <= request.app[CLOCK].now():
        raise Unauthorized(f"admin token {row.name!r} has expired", reason="expired_token", headers=_CHALLENGE)
    if scope not in row.scopes:
        raise Forbidden(f"admin token {row.name!r} lacks the scope {scope!r}", reason="missing_scope")
    return AdminPrincipal(name=row.name, token_id=row.id, scopes=row.scopes, expires_at=row.expires_at)
