"""Scripts stored by path, with immutable versions identified by hash."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .languages import LanguageCatalog, ScriptError
from .schema import scripts

# Windmill paths: u/<user>/<name> or f/<folder>/<name>, possibly deeper.
PATH_RE = re.compile(r"^(u|f)/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")


class ScriptInputError(ValueError):
    """Bad input when saving a script; ``field`` names the offending field."""

    def __init__(self, field: str, message: str, **extra: Any):
        super().__init__(message)
        self.field = field
        self.message = message
        self.extra = extra


class VersionConflict(Exception):
    def __init__(self, latest: str | None):
        super().__init__(f"parent_hash is not the latest version (latest is {latest})")
        self.latest = latest


@dataclass
class NewScript:
    path: str
    content: str
    language: str
    summary: str = ""
    description: str = ""
    parent_hash: str | None = None


def check_path(path: str) -> None:
    if not isinstance(path, str) or not PATH_RE.match(path):
        raise ScriptInputError(
            "path", f"invalid path {path!r}: expected u/<user>/<name> or f/<folder>/<name>"
        )


def version_hash(workspace_id: str, s: NewScript, language: str, parent: str | None) -> str:
    h = hashlib.sha256()
    for part in (workspace_id, s.path, language, s.content, s.summary, s.description, parent or ""):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


COLUMNS = (
    scripts.c.hash, scripts.c.path, scripts.c.parent_hash, scripts.c.language, scripts.c.content,
    scripts.c.summary, scripts.c.description, scripts.c.schema, scripts.c.created_by,
    scripts.c.created_at, scripts.c.archived, scripts.c.lock,
)


async def latest(conn: AsyncConnection, workspace_id: str, path: str) -> dict | None:
    row = (
        await conn.execute(
            sa.select(*COLUMNS)
            .where(scripts.c.workspace_id == workspace_id, scripts.c.path == path,
                   scripts.c.archived.is_(False))
            .order_by(scripts.c.created_at.desc())
            .limit(1)
        )
    ).mappings().first()
    return dict(row) if row else None


async def by_hash(conn: AsyncConnection, workspace_id: str, script_hash: str) -> dict | None:
    row = (
        await conn.execute(
            sa.select(*COLUMNS).where(scripts.c.workspace_id == workspace_id, scripts.c.hash == script_hash)
        )
    ).mappings().first()
    return dict(row) if row else None


async def create(
    conn: AsyncConnection, languages: LanguageCatalog, workspace_id: str, s: NewScript, created_by: str,
    lock: str | None = None,
) -> str:
    """Save a new version (or return the latest hash when nothing changed). Raises ScriptInputError.

    ``lock`` is the version's pinned dependencies (Language.lock), computed before the transaction.
    """
    check_path(s.path)
    if not isinstance(s.content, str) or not s.content.strip():
        raise ScriptInputError("content", "content must be a non-empty string")
    language = languages.resolve(s.language) if isinstance(s.language, str) else None
    if language is None:
        raise ScriptInputError(
            "language",
            f"unknown language {s.language!r}; available: {', '.join(languages.names())}",
            available=languages.names(),
        )
    try:
        schema = language.schema(s.content)
    except ScriptError as exc:
        raise ScriptInputError("content", exc.message, line=exc.line, column=exc.column) from None
    # Serialise concurrent saves of one path so that versions form a single chain.
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"{workspace_id}:{s.path}"))))
    current = await latest(conn, workspace_id, s.path)
    current_hash = current["hash"] if current else None
    if s.parent_hash is not None and s.parent_hash != current_hash:
        raise VersionConflict(current_hash)
    if current and (current["content"], current["language"], current["summary"], current["description"]) == (
        s.content, language.id, s.summary, s.description
    ):
        return current_hash
    new_hash = version_hash(workspace_id, s, language.id, current_hash)
    await conn.execute(
        scripts.insert().values(
            workspace_id=workspace_id, hash=new_hash, path=s.path, parent_hash=current_hash,
            language=language.id, content=s.content, summary=s.summary,
            description=s.description, schema=schema, created_by=created_by, lock=lock,
        )
    )
    return new_hash


async def list_latest(conn: AsyncConnection, workspace_id: str, limit: int = 1000) -> list[dict]:
    ranked = (
        sa.select(
            *COLUMNS,
            sa.func.row_number()
            .over(partition_by=scripts.c.path, order_by=scripts.c.created_at.desc())
            .label("rank"),
        )
        .where(scripts.c.workspace_id == workspace_id, scripts.c.archived.is_(False))
        .subquery()
    )
    rows = (
        await conn.execute(
            sa.select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.path).limit(limit)
        )
    ).mappings().all()
    return [{k: v for k, v in r.items() if k != "rank"} for r in rows]


async def history(conn: AsyncConnection, workspace_id: str, path: str) -> list[dict]:
    rows = (
        await conn.execute(
            sa.select(scripts.c.hash, scripts.c.parent_hash, scripts.c.created_at, scripts.c.summary)
            .where(scripts.c.workspace_id == workspace_id, scripts.c.path == path)
            .order_by(scripts.c.created_at.desc())
        )
    ).mappings().all()
    return [dict(r) for r in rows]


async def archive(conn: AsyncConnection, workspace_id: str, path: str) -> int:
    res = await conn.execute(
        scripts.update()
        .where(scripts.c.workspace_id == workspace_id, scripts.c.path == path)
        .values(archived=True)
    )
    return res.rowcount
