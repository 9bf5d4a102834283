"""Windmill-compatible variables: a string at a path, stored encrypted when it is a secret.

Plain values are stored as they are; a secret's value is stored as ``enc:v1:...`` (core/secrets.py) and
decrypted only on the way out (``get_value``, ``get``) or into the log masker.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import variables
from .secrets import SecretBox

# Windmill paths: u/<user>/<name> or f/<folder>/<name>, possibly deeper.
PATH_RE = re.compile(r"^(u|f)/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
MAX_PATH_CHARS = 255
MAX_DESCRIPTION_CHARS = 10_000


class InputError(ValueError):
    """Bad input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class PathTaken(Exception):
    def __init__(self, path: str):
        super().__init__(f"{path!r} already exists")
        self.path = path


def check_path(path: Any, field: str = "path") -> str:
    if not isinstance(path, str) or len(path) > MAX_PATH_CHARS or not PATH_RE.match(path):
        raise InputError(field, f"invalid {field} {path!r}: expected u/<user>/<name> or f/<folder>/<name>")
    return path


def check_value(value: Any) -> str:
    if value is None:
        raise InputError("value", "field 'value' is required")
    if not isinstance(value, str):
        raise InputError("value", f"field 'value' must be a string, got {type(value).__name__}")
    return value


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
        raise InputError("description", f"field 'description' must be a string of at most {MAX_DESCRIPTION_CHARS} characters")
    return value


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, f"field {field!r} must be a boolean")
    return value


async def _stored(box: SecretBox, workspace_id: str, value: str, is_secret: bool) -> str:
    return await box.encrypt(workspace_id, value) if is_secret else value


async def _plain(box: SecretBox, workspace_id: str, row) -> str:
    return await box.decrypt(workspace_id, row.value) if row.is_secret else row.value


def _json(row, value: str | None) -> dict:
    return {
        "workspace_id": row.workspace_id, "path": row.path, "value": value, "is_secret": row.is_secret,
        "description": row.description, "created_by": row.created_by, "created_at": row.created_at,
        "updated_at": row.updated_at, "extra_perms": {}, "is_oauth": False, "is_expired": False,
        "account": None,
    }


async def create(
    conn: AsyncConnection, box: SecretBox, workspace_id: str, *, path: str, value: str,
    is_secret: bool = False, description: str = "", created_by: str = "admin",
) -> None:
    stored = await _stored(box, workspace_id, value, is_secret)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(variables).values(
                workspace_id=workspace_id, path=path, value=stored, is_secret=is_secret,
                description=description, created_by=created_by,
            ))
    except IntegrityError:
        raise PathTaken(path) from None


async def update(
    conn: AsyncConnection, box: SecretBox, workspace_id: str, path: str, *, value: str | None = None,
    is_secret: bool | None = None, description: str | None = None, new_path: str | None = None,
) -> bool:
    """Change what is given; False when there is no variable at ``path``."""
    row = (await conn.execute(
        select(variables).where(variables.c.workspace_id == workspace_id, variables.c.path == path).with_for_update()
    )).first()
    if row is None:
        return False
    changes: dict[str, Any] = {"updated_at": func.now()}
    secret = row.is_secret if is_secret is None else is_secret
    if value is not None or secret != row.is_secret:
        plain = value if value is not None else await _plain(box, workspace_id, row)
        changes.update(value=await _stored(box, workspace_id, plain, secret), is_secret=secret)
    if description is not None:
        changes["description"] = description
    if new_path is not None and new_path != path:
        changes["path"] = new_path
    try:
        async with conn.begin_nested():
            await conn.execute(sql_update(variables).where(
                variables.c.workspace_id == workspace_id, variables.c.path == path).values(**changes))
    except IntegrityError:
        raise PathTaken(new_path or path) from None
    return True


async def get(conn: AsyncConnection, box: SecretBox, workspace_id: str, path: str, *, decrypt: bool = True) -> dict | None:
    row = (await conn.execute(
        select(variables).where(variables.c.workspace_id == workspace_id, variables.c.path == path)
    )).first()
    if row is None:
        return None
    value = await _plain(box, workspace_id, row) if decrypt or not row.is_secret else None
    return _json(row, value)


async def get_value(conn: AsyncConnection, box: SecretBox, workspace_id: str, path: str) -> str | None:
    row = (await conn.execute(
        select(variables.c.value, variables.c.is_secret)
        .where(variables.c.workspace_id == workspace_id, variables.c.path == path)
    )).first()
    return None if row is None else await _plain(box, workspace_id, row)


async def exists(conn: AsyncConnection, workspace_id: str, path: str) -> bool:
    found = await conn.scalar(
        select(variables.c.path).where(variables.c.workspace_id == workspace_id, variables.c.path == path)
    )
    return found is not None


async def delete(conn: AsyncConnection, workspace_id: str, path: str) -> bool:
    result = await conn.execute(
        sql_delete(variables).where(variables.c.workspace_id == workspace_id, variables.c.path == path)
    )
    return result.rowcount > 0


async def list_all(conn: AsyncConnection, workspace_id: str, *, path_start: str | None = None,
                   limit: int = 1000) -> list[dict]:
    """Every variable; a secret's value is left out (null), never listed in clear."""
    query = select(variables).where(variables.c.workspace_id == workspace_id)
    if path_start:
        query = query.where(variables.c.path.startswith(path_start, autoescape=True))
    rows = (await conn.execute(query.order_by(variables.c.path).limit(limit))).all()
    return [_json(r, None if r.is_secret else r.value) for r in rows]


async def secret_values(conn: AsyncConnection, box: SecretBox, workspace_id: str) -> list[str]:
    """The decrypted values of every secret variable of a workspace (for the log masker)."""
    rows = (await conn.execute(
        select(variables.c.value).where(variables.c.workspace_id == workspace_id, variables.c.is_secret)
    )).all()
    return [await box.decrypt(workspace_id, r.value) for r in rows]
