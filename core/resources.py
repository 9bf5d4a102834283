"""Windmill-compatible resources: any JSON value at a path, with a resource type.

A script's state is a resource of type ``state`` at ``{script_path}/user``. ``interpolated`` resolves
``"$var:<path>"`` and ``"$res:<path>"`` strings at any depth, as Windmill's clients expect.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import variables
from .schema import resources
from .secrets import SecretBox
from .resource_types import ResourceTypeCatalog, ResourceValueError
from .variables import InputError, PathTaken, check_path

# Types every workspace accepts without registration: both Windmill clients write state as "state",
# and Python's set_resource defaults to "any".
BUILTIN_TYPES = ("any", "state")
# Windmill's cap: a $res: chain deeper than this (a cycle, in practice) is an error, not a hang.
MAX_DEPTH = 50
VAR_PREFIX = "$var:"
RES_PREFIX = "$res:"

__all__ = ["InputError", "PathTaken", "TooDeep", "UnresolvedReference", "check_path"]


class UnresolvedReference(Exception):
    """A ``$var:`` or ``$res:`` string names nothing."""

    def __init__(self, reference: str):
        super().__init__(f"{reference!r} refers to nothing: no such variable or resource")
        self.reference = reference


class TooDeep(Exception):
    def __init__(self, path: str):
        super().__init__(
            f"resource {path!r}: $res: references nest deeper than {MAX_DEPTH} levels (a cycle?)"
        )
        self.path = path


def check_type(resource_type: Any, known: Iterable[str] = ()) -> str:
    """The type name, if it is "any", "state" or one in ``known`` (registered by a plugin)."""
    if resource_type is None:
        raise InputError("resource_type", "field 'resource_type' is required")
    if not isinstance(resource_type, str):
        raise InputError("resource_type", "field 'resource_type' must be a string")
    accepted = (*BUILTIN_TYPES, *known)
    if resource_type not in accepted:
        raise InputError(
            "resource_type", f"unknown resource type {resource_type!r}; known types: {', '.join(sorted(accepted))}"
        )
    return resource_type


def _json(row) -> dict:
    return {
        "workspace_id": row.workspace_id, "path": row.path, "value": row.value,
        "resource_type": row.resource_type, "description": row.description, "created_by": row.created_by,
        "created_at": row.created_at, "updated_at": row.updated_at, "extra_perms": {}, "is_oauth": False,
    }


def _where(workspace_id: str, path: str):
    return (resources.c.workspace_id == workspace_id, resources.c.path == path)


def _check_value(types: ResourceTypeCatalog | None, resource_type: str, value: Any) -> None:
    if types is not None:
        try:
            types.check(resource_type, value)
        except ResourceValueError as exc:
            raise InputError(exc.field, exc.message) from None


async def create(
    conn: AsyncConnection, workspace_id: str, *, path: str, value: Any, resource_type: str,
    description: str = "", created_by: str = "admin", update_if_exists: bool = False,
    types: ResourceTypeCatalog | None = None,
) -> None:
    _check_value(types, resource_type, value)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(resources).values(
                workspace_id=workspace_id, path=path, value=value, resource_type=resource_type,
                description=description, created_by=created_by,
            ))
    except IntegrityError:
        if not update_if_exists:
            raise PathTaken(path) from None
        await update(conn, workspace_id, path, value=value, resource_type=resource_type, description=description,
                     types=types)


async def update(
    conn: AsyncConnection, workspace_id: str, path: str, *, value: Any = ..., resource_type: str | None = None,
    description: str | None = None, new_path: str | None = None, types: ResourceTypeCatalog | None = None,
) -> bool:
    """Change what is given (``value=...`` leaves the value); False when there is no resource at ``path``.

    With ``types``, the value that results must fit its (possibly new) resource type.
    """
    if types is not None and (value is not ... or resource_type is not None):
        current = (await conn.execute(
            select(resources.c.value, resources.c.resource_type).where(*_where(workspace_id, path)).with_for_update()
        )).first()
        if current is None:
            return False
        _check_value(types, resource_type or current.resource_type, current.value if value is ... else value)
    changes: dict[str, Any] = {"updated_at": func.now()}
    if value is not ...:
        changes["value"] = value
    if resource_type is not None:
        changes["resource_type"] = resource_type
    if description is not None:
        changes["description"] = description
    if new_path is not None and new_path != path:
        changes["path"] = new_path
    try:
        async with conn.begin_nested():
            result = await conn.execute(sql_update(resources).where(*_where(workspace_id, path)).values(**changes))
    except IntegrityError:
        raise PathTaken(new_path or path) from None
    return result.rowcount > 0


async def get(conn: AsyncConnection, workspace_id: str, path: str) -> dict | None:
    row = (await conn.execute(select(resources).where(*_where(workspace_id, path)))).first()
    return None if row is None else _json(row)


async def get_value(conn: AsyncConnection, workspace_id: str, path: str) -> tuple[bool, Any]:
    """(found, raw value)."""
    row = (await conn.execute(select(resources.c.value).where(*_where(workspace_id, path)))).first()
    return (False, None) if row is None else (True, row.value)


async def exists(conn: AsyncConnection, workspace_id: str, path: str) -> bool:
    return (await conn.scalar(select(resources.c.path).where(*_where(workspace_id, path)))) is not None


async def delete(conn: AsyncConnection, workspace_id: str, path: str) -> bool:
    result = await conn.execute(sql_delete(resources).where(*_where(workspace_id, path)))
    return result.rowcount > 0


async def list_all(conn: AsyncConnection, workspace_id: str, *, resource_type: str | None = None,
                   path_start: str | None = None, limit: int = 1000) -> list[dict]:
    query = select(resources).where(resources.c.workspace_id == workspace_id)
    if resource_type:
        query = query.where(resources.c.resource_type.in_(resource_type.split(",")))
    if path_start:
        query = query.where(resources.c.path.startswith(path_start, autoescape=True))
    rows = (await conn.execute(query.order_by(resources.c.path).limit(limit))).all()
    return [_json(r) for r in rows]


async def interpolated(conn: AsyncConnection, box: SecretBox, workspace_id: str, path: str) -> tuple[bool, Any]:
    """(found, value with every "$var:<path>" and "$res:<path>" string resolved, at any depth)."""
    found, value = await get_value(conn, workspace_id, path)
    if not found:
        return False, None
    return True, await _Interpolation(conn, box, workspace_id).resolve(value, path, 1)


class _Interpolation:
    """One interpolation: each referenced variable and resource is read at most once."""

    def __init__(self, conn: AsyncConnection, box: SecretBox, workspace_id: str):
        self.conn, self.box, self.ws = conn, box, workspace_id
        self.vars: dict[str, str] = {}
        self.raw: dict[str, Any] = {}
        # Resolved resources: a diamond of references costs one resolution each, not 2^depth.
        self.done: dict[str, Any] = {}

    async def resolve(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, str):
            return await self._reference(value, path, depth)
        if isinstance(value, list):
            return [await self.resolve(v, path, depth) for v in value]
        if isinstance(value, dict):
            return {k: await self.resolve(v, path, depth) for k, v in value.items()}
        return value

    async def _reference(self, text: str, path: str, depth: int) -> Any:
        if text.startswith(VAR_PREFIX):
            name = text[len(VAR_PREFIX):]
            if name not in self.vars:
                plain = await variables.get_value(self.conn, self.box, self.ws, name)
                if plain is None:
                    raise UnresolvedReference(text)
                self.vars[name] = plain
            return self.vars[name]
        if text.startswith(RES_PREFIX):
            if depth >= MAX_DEPTH:
                raise TooDeep(path)
            name = text[len(RES_PREFIX):]
            if name in self.done:
                return self.done[name]
            if name not in self.raw:
                found, raw = await get_value(self.conn, self.ws, name)
                if not found:
                    raise UnresolvedReference(text)
                self.raw[name] = raw
            self.done[name] = await self.resolve(self.raw[name], name, depth + 1)
            return self.done[name]
        return text
