"""Token authentication. Every handler calls ``require`` with the scope it needs.

The caller's token must exist, be unexpired, belong to the workspace in the URL and grant the scope.
Principals are cached for a few seconds (not job tokens, which must die with their job).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from aiohttp import web

from headrace.core import tokens as tok
from headrace.core.tokens import Principal

from .http import ApiError


CACHE_TTL_S = 5.0


class TokenCache:
    def __init__(self, ttl: float = CACHE_TTL_S):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str) -> Principal | None:
        hit = self._entries.get(token_hash)
        if hit is None or hit[0] < time.monotonic():
            return None
        expires_at = hit[1].expires_at
        if expires_at is not None and expires_at <= datetime.now(timezone.utc):
            # Expired while cached: the token must stop working at once, not TTL seconds later.
            self._entries.pop(token_hash, None)
            return None
        return hit[1]

    def put(self, principal: Principal) -> None:
        if principal.job_id is not None:
            return
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[principal.token_hash] = (time.monotonic() + self.ttl, principal)

    def evict(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)


def bearer(request: web.Request, allow_query: bool = False) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if allow_query:
        return request.query.get("token")
    return None


async def authenticate(request: web.Request, allow_query: bool = False) -> Principal:
    from .keys import DB, TOKENS

    token = bearer(request, allow_query)
    if not token:
        raise ApiError(401, "unauthorized", "missing token: send Authorization: Bearer <token>")
    cache = request.app[TOKENS]
    token_hash = tok.hash_token(token)
    principal = cache.get(token_hash)
    if principal is None:
        async with request.app[DB].engine.connect() as conn:
            principal = await tok.lookup(conn, token)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid or expired token")
        cache.put(principal)
    return principal


async def require(request: web.Request, scope: str, *, allow_query: bool = False) -> Principal:
    """The authenticated caller, checked against the URL's workspace and ``scope`` (401/403 otherwise)."""
    principal = await authenticate(request, allow_query)
    workspace = request.match_info.get("workspace")
    if workspace is not None and workspace != principal.workspace_id:
        raise ApiError(403, "forbidden", f"this token is not valid for workspace {workspace!r}")
    if not principal.allows(scope):
        raise ApiError(403, "forbidden", f"this token lacks the scope {scope!r}", scope=scope)
    return principal
