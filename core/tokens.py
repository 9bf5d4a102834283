"""API tokens: random, shown once, stored as SHA-256; each carries a workspace, scopes and an expiry."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import tokens

TOKEN_PREFIX = "hr_"

# Scope names. "*" grants everything; "<area>:*" grants every action of an area.
ADMIN_SCOPES = ["*"]
JOB_SCOPES = [
    "jobs:run", "jobs:read", "jobs:cancel", "scripts:read",
    "variables:read", "variables:write", "resources:read", "resources:write",
]
KNOWN_SCOPES = {
    "*", "scripts:read", "scripts:write", "jobs:run", "jobs:read", "jobs:cancel",
    "tokens:read", "tokens:write", "variables:read", "variables:write",
    "resources:read", "resources:write",
    "triggers:read", "triggers:write", "events:read", "events:write",
}


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_allows(granted: list[str], needed: str) -> bool:
    area = needed.split(":", 1)[0]
    return "*" in granted or needed in granted or f"{area}:*" in granted


def validate_scopes(scopes: list[str]) -> list[str]:
    """The scopes that are not known (a scope may also be '<area>:*')."""
    known_areas = {s.split(":", 1)[0] for s in KNOWN_SCOPES}
    return [
        s for s in scopes
        if s not in KNOWN_SCOPES and not (s.endswith(":*") and s[:-2] in known_areas)
    ]


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a token."""

    workspace_id: str
    owner: str
    scopes: tuple[str, ...]
    token_hash: str
    script_path: str | None = None
    job_id: uuid.UUID | None = None
    expires_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        return scope_allows(list(self.scopes), scope)


async def create_token(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    scopes: list[str],
    label: str = "",
    owner: str = "admin",
    expires_in: timedelta | None = None,
    script_path: str | None = None,
    job_id: uuid.UUID | None = None,
) -> str:
    token = new_token()
    expires_at = datetime.now(timezone.utc) + expires_in if expires_in else None
    await conn.execute(
        tokens.insert().values(
            hash=hash_token(token), prefix=token[: len(TOKEN_PREFIX) + 6],
            workspace_id=workspace_id, label=label, owner=owner, scopes=scopes,
            script_path=script_path, job_id=job_id, expires_at=expires_at,
        )
    )
    return token


async def lookup(conn: AsyncConnection, token: str) -> Principal | None:
    h = hash_token(token)
    row = (
        await conn.execute(
            sa.select(tokens).where(
                tokens.c.hash == h,
                sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > sa.func.now()),
            )
        )
    ).mappings().first()
    if row is None:
        return None
    return Principal(
        row["workspace_id"], row["owner"], tuple(row["scopes"]), h,
        row["script_path"], row["job_id"], row["expires_at"],
    )
