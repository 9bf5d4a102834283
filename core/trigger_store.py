"""Creating, reading, changing and deleting trigger rows; every change is announced on NOTIFY."""
from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import trigger_secrets
from .json_schema import first_error, validator_for
from .schema import scripts, triggers
from .scripts import PATH_RE
from .secrets import SecretBox
from .triggers import CHANNEL_TRIGGERS, MODES, Trigger, TriggerConfigError, TriggerKind

EDITABLE = ("script_path", "config", "mode", "error_handler_path", "error_handler_args", "summary")


class TriggerInputError(ValueError):
    def __init__(self, field: str | None, message: str, status: int = 400):
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def row_to_trigger(row) -> Trigger:
    data = dict(row)
    known = {k: data.pop(k) for k in list(data) if k in Trigger.__dataclass_fields__}
    return Trigger(**known, extra=data)


def check_config(kind: TriggerKind, config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise TriggerInputError("config", "config must be a JSON object")
    error = first_error(validator_for(kind.config_schema), config, "config")
    if error is not None:
        raise TriggerInputError(*error)
    try:
        kind.check_config(config)
    except TriggerConfigError as exc:
        field = "config" + (f".{exc.field}" if exc.field else "")
        raise TriggerInputError(field, f"{field}: {exc.message}") from None
    return config


async def _check_script(conn: AsyncConnection, workspace_id: str, path: Any, field: str) -> None:
    if not isinstance(path, str) or not PATH_RE.match(path):
        raise TriggerInputError(field, f"{field} must be a script path like f/<folder>/<name>")
    found = await conn.scalar(
        sa.select(scripts.c.hash).where(
            scripts.c.workspace_id == workspace_id, scripts.c.path == path, scripts.c.archived.is_(False)
        ).limit(1)
    )
    if found is None:
        raise TriggerInputError(field, f"{field}: no script at path {path!r}", status=400)


async def _validate(conn: AsyncConnection, kind: TriggerKind, workspace_id: str, values: dict) -> dict:
    if "script_path" in values:
        await _check_script(conn, workspace_id, values["script_path"], "script_path")
    if "config" in values:
        values["config"] = check_config(kind, values["config"])
    if "mode" in values and values["mode"] not in MODES:
        raise TriggerInputError("mode", f"mode must be one of {', '.join(MODES)}")
    if values.get("error_handler_path") is not None:
        await _check_script(conn, workspace_id, values["error_handler_path"], "error_handler_path")
    if values.get("error_handler_args") is not None and not isinstance(values["error_handler_args"], dict):
        raise TriggerInputError("error_handler_args", "error_handler_args must be a JSON object")
    if "summary" in values and not isinstance(values["summary"], str):
        raise TriggerInputError("summary", "summary must be a string")
    return values


async def _prepare(kind: TriggerKind, conn: AsyncConnection, workspace_id: str, path: str | None,
                   config: dict, old: dict | None, secrets: SecretBox | None) -> dict:
    """The kind's own preparation, then its secrets: a mask keeps the stored value, the rest is sealed."""
    try:
        config = await kind.prepare_config(conn, workspace_id, path, config)
        config = trigger_secrets.keep_masked(kind, config, old)
        return await trigger_secrets.seal(secrets, kind, workspace_id, config, old)
    except TriggerConfigError as exc:
        field = "config" + (f".{exc.field}" if exc.field else "")
        raise TriggerInputError(field, f"{field}: {exc.message}") from None


async def notify(conn: AsyncConnection, workspace_id: str, kind: str, trigger_id) -> None:
    await conn.execute(
        sa.select(sa.func.pg_notify(CHANNEL_TRIGGERS, f"{workspace_id}:{kind}:{trigger_id}"))
    )


async def create(conn: AsyncConnection, kind: TriggerKind, workspace_id: str, body: dict, created_by: str,
                 *, secrets: SecretBox | None = None) -> Trigger:
    """``secrets`` seals the kind's secret fields; it is needed only when the config holds one."""
    path = body.get("path")
    if not isinstance(path, str) or not PATH_RE.match(path):
        raise TriggerInputError("path", "path must look like f/<folder>/<name> or u/<user>/<name>")
    if "script_path" not in body:
        raise TriggerInputError("script_path", "script_path is required")
    if "config" not in body:
        body = {**body, "config": {}}
    values = await _validate(conn, kind, workspace_id, {k: body[k] for k in EDITABLE if k in body})
    values["config"] = await _prepare(kind, conn, workspace_id, None, values["config"], None, secrets)
    exists = await conn.scalar(
        sa.select(triggers.c.id).where(
            triggers.c.workspace_id == workspace_id, triggers.c.kind == kind.id, triggers.c.path == path
        )
    )
    if exists is not None:
        raise TriggerInputError("path", f"a {kind.id} trigger already exists at {path!r}", status=409)
    trigger_id = uuid.uuid4()
    row = (await conn.execute(
        triggers.insert().values(id=trigger_id, workspace_id=workspace_id, kind=kind.id, path=path,
                                 created_by=created_by, **values).returning(*triggers.c)
    )).mappings().one()
    await notify(conn, workspace_id, kind.id, trigger_id)
    return row_to_trigger(row)


def _where(workspace_id: str, kind: str, path: str):
    return sa.and_(triggers.c.workspace_id == workspace_id, triggers.c.kind == kind, triggers.c.path == path)


async def get(conn: AsyncConnection, workspace_id: str, kind: str, path: str) -> Trigger | None:
    row = (await conn.execute(sa.select(triggers).where(_where(workspace_id, kind, path)))).mappings().first()
    return row_to_trigger(row) if row else None


async def get_by_id(conn: AsyncConnection, trigger_id: uuid.UUID) -> Trigger | None:
    row = (await conn.execute(sa.select(triggers).where(triggers.c.id == trigger_id))).mappings().first()
    return row_to_trigger(row) if row else None


async def list_(conn: AsyncConnection, workspace_id: str, kind: str | None = None,
                script_path: str | None = None) -> list[Trigger]:
    q = sa.select(triggers).where(triggers.c.workspace_id == workspace_id)
    if kind is not None:
        q = q.where(triggers.c.kind == kind)
    if script_path is not None:
        q = q.where(triggers.c.script_path == script_path)
    rows = (await conn.execute(q.order_by(triggers.c.path))).mappings().all()
    return [row_to_trigger(r) for r in rows]


async def list_all(conn: AsyncConnection, kinds: list[str]) -> list[Trigger]:
    """Every trigger of these kinds, in every workspace (for the supervisor and the HTTP table)."""
    rows = (await conn.execute(sa.select(triggers).where(triggers.c.kind.in_(kinds)))).mappings().all()
    return [row_to_trigger(r) for r in rows]


async def update(conn: AsyncConnection, kind: TriggerKind, workspace_id: str, path: str, body: dict,
                 *, secrets: SecretBox | None = None) -> Trigger:
    values = await _validate(conn, kind, workspace_id, {k: body[k] for k in EDITABLE if k in body})
    if "config" in values:
        old = await get(conn, workspace_id, kind.id, path)
        values["config"] = await _prepare(kind, conn, workspace_id, path, values["config"],
                                          old.config if old else None, secrets)
    new_path = body.get("path")
    if new_path is not None and new_path != path:
        if not isinstance(new_path, str) or not PATH_RE.match(new_path):
            raise TriggerInputError("path", "path must look like f/<folder>/<name> or u/<user>/<name>")
        values["path"] = new_path
    values["updated_at"] = sa.func.now()
    values["last_error"] = None
    row = (await conn.execute(
        triggers.update().where(_where(workspace_id, kind.id, path)).values(**values).returning(*triggers.c)
    )).mappings().first()
    if row is None:
        raise TriggerInputError(None, f"no {kind.id} trigger at {path!r}", status=404)
    await notify(conn, workspace_id, kind.id, row["id"])
    return row_to_trigger(row)


async def delete(conn: AsyncConnection, workspace_id: str, kind: str, path: str) -> bool:
    trigger_id = await conn.scalar(
        triggers.delete().where(_where(workspace_id, kind, path)).returning(triggers.c.id)
    )
    if trigger_id is None:
        return False
    await notify(conn, workspace_id, kind, trigger_id)
    return True


async def record_error(conn: AsyncConnection, trigger_id: uuid.UUID, error: str | None) -> None:
    await conn.execute(
        triggers.update().where(triggers.c.id == trigger_id).values(
            last_error=error, last_error_at=sa.func.now() if error else None
        )
    )
