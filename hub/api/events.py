"""The event ledger over HTTP: recent events of a trigger or a script, one event, replay, and the bulk
resume/cancel of the jobs a suspended trigger kept. Also the server's periodic retention task."""
from __future__ import annotations

import asyncio
import uuid
from typing import AsyncIterator

from aiohttp import web

from headrace.core import ledger
from headrace.core.args import ArgsError
from headrace.core.ledger import Event, ScriptMissing
from headrace.core.retention import retention_loop
from headrace.core.triggers import TriggerKind

from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import DB, KINDS, SETTINGS, SINK
from ..request_args import args_from_payload
from .triggers import find_trigger

routes = web.RouteTableDef()

MAX_LIMIT = 1000
STATUSES = ("queued", "suspended", "captured", "canceled", "skipped")


def event_json(row: dict) -> dict:
    return {
        "id": row["id"], "kind": row["kind"], "source": row["source"], "trigger_id": row["trigger_id"],
        "script_path": row["script_path"], "received_at": row["received_at"], "payload": row["payload"],
        "dedup_key": row["dedup_key"], "job_id": row["job_id"], "status": row["status"],
        "replay_of": row["replay_of"],
    }


def _filters(request: web.Request) -> tuple[str | None, int]:
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_query", f"status must be one of {', '.join(STATUSES)}", field="status")
    raw = request.query.get("limit") or request.query.get("per_page") or "100"
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", "limit must be an integer", field="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid_query", f"limit must be from 1 to {MAX_LIMIT}", field="limit")
    return status, limit


def _event_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise ApiError(400, "invalid_id", f"{request.match_info['id']!r} is not an event id", field="id") from None


@routes.get("/api/w/{workspace}/triggers/{kind}/events/{path:.+}")
async def trigger_events(request: web.Request) -> web.Response:
    p, _, t = await find_trigger(request, "events:read")
    status, limit = _filters(request)
    rows = await ledger.list_trigger_events(request.app[DB].pool, p.workspace_id, t.id, status=status, limit=limit)
    return json_response([event_json(r) for r in rows])


@routes.post("/api/w/{workspace}/triggers/{kind}/resume/{path:.+}")
async def resume_suspended(request: web.Request) -> web.Response:
    p, _, t = await find_trigger(request, "triggers:write")
    ids = await ledger.resume_suspended(request.app[DB].pool, p.workspace_id, t.id)
    return json_response({"resumed": len(ids), "job_ids": ids})


@routes.post("/api/w/{workspace}/triggers/{kind}/cancel_suspended/{path:.+}")
async def cancel_suspended(request: web.Request) -> web.Response:
    p, _, t = await find_trigger(request, "triggers:write")
    body = await read_json(request, default={})
    reason = body.get("reason") or f"suspended events of {t.kind} trigger {t.path} canceled by {p.owner}"
    if not isinstance(reason, str):
        raise ApiError(400, "invalid_field", "reason must be a string", field="reason")
    ids = await ledger.cancel_suspended(request.app[DB].pool, p.workspace_id, t.id, reason)
    return json_response({"canceled": len(ids), "job_ids": ids})


@routes.get("/api/w/{workspace}/events/list")
async def list_events(request: web.Request) -> web.Response:
    p = await require(request, "events:read")
    status, limit = _filters(request)
    rows = await ledger.list_events(
        request.app[DB].pool, p.workspace_id, script_path=request.query.get("script_path") or None,
        kind=request.query.get("kind") or None, status=status, limit=limit,
    )
    return json_response([event_json(r) for r in rows])


@routes.get("/api/w/{workspace}/events/get/{id}")
async def get_event(request: web.Request) -> web.Response:
    p = await require(request, "events:read")
    row = await ledger.get_event(request.app[DB].pool, p.workspace_id, _event_id(request))
    if row is None:
        raise ApiError(404, "not_found", f"no event {request.match_info['id']} in this workspace")
    return json_response(event_json(row))


def replay_args(request: web.Request, row: dict) -> dict:
    """main()'s arguments for a stored event, rebuilt the way its source built them."""
    kind = request.app[KINDS].get(row["kind"])
    if kind is not None and type(kind).args_from_event is not TriggerKind.args_from_event:
        return kind.args_from_event({"kind": row["kind"], **row["payload"]})  # e.g. http: + path params
    if row["kind"] == "webhook" or (kind is not None and kind.family == "http"):
        return args_from_payload(row["payload"])
    envelope = {"kind": row["kind"], **row["payload"]}
    return kind.args_from_event(envelope) if kind is not None else {"event": envelope}


@routes.post("/api/w/{workspace}/events/replay/{id}")
async def replay_event(request: web.Request) -> web.Response:
    """A new run of the event's script (its latest version) from the stored payload."""
    p = await require(request, "events:write")
    row = await ledger.get_event(request.app[DB].pool, p.workspace_id, _event_id(request))
    if row is None:
        raise ApiError(404, "not_found", f"no event {request.match_info['id']} in this workspace")
    if p.script_path is not None and p.script_path != row["script_path"]:
        raise ApiError(403, "forbidden", f"this token may only run {p.script_path!r}")
    event = Event(
        workspace_id=p.workspace_id, source=row["source"], kind=row["kind"], script_path=row["script_path"],
        payload=row["payload"], args=replay_args(request, row), trigger_id=row["trigger_id"],
        created_by=p.owner, replay_of=row["id"],
    )
    try:
        acc = await request.app[SINK].accept(event)
    except ScriptMissing as exc:
        raise ApiError(409, "script_not_found", f"cannot replay: {exc}", field="script_path") from None
    except ArgsError as exc:
        raise ApiError(409, "invalid_args", f"cannot replay: {exc.message}", field=exc.field) from None
    return json_response({"event_id": acc.event_id, "job_id": acc.job_id, "replay_of": row["id"]}, status=201)


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Purge old ledger rows now and then (Settings.event_retention_days)."""
    task = asyncio.create_task(retention_loop(app[DB].pool, app[SETTINGS].event_retention_days),
                               name="event-retention")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- the OpenAPI description of these routes (merged into hub/openapi.py's table) -------------------

def _document() -> None:
    from .. import openapi as doc

    w, path = doc.W, {"path": doc.WM_PATH}
    event_id = {"id": {**doc.STR, "description": "an event id (UUID)"}}
    event = doc.obj(
        ["id", "kind", "source", "script_path", "received_at", "payload", "status"],
        id=doc.UUID, kind=doc.STR, source=doc.STR, trigger_id=doc.nullable(doc.UUID), script_path=doc.STR,
        received_at=doc.TIME, payload=doc.OBJECT, dedup_key=doc.nullable(doc.STR),
        job_id=doc.nullable(doc.UUID), status={"type": "string", "enum": list(STATUSES)},
        replay_of=doc.nullable(doc.UUID),
    )
    filters = [doc.Query("status", {"type": "string", "enum": list(STATUSES)}),
               doc.Query("limit", doc.int_range(1, MAX_LIMIT), "how many, newest first (default 100)")]
    bulk = doc.obj(["job_ids"], job_ids=doc.array(doc.UUID), resumed=doc.INT, canceled=doc.INT)
    doc.OPERATIONS.update({
        ("GET", f"{w}/triggers/{{kind}}/events/{{path}}"): doc.Op(
            "A trigger's recent events", "events", doc.ok(doc.array(event)), scope="events:read",
            query=filters, path_params=path),
        ("POST", f"{w}/triggers/{{kind}}/resume/{{path}}"): doc.Op(
            "Run every job kept while the trigger was suspended", "events", doc.ok(bulk),
            scope="triggers:write", path_params=path),
        ("POST", f"{w}/triggers/{{kind}}/cancel_suspended/{{path}}"): doc.Op(
            "Cancel every job kept while the trigger was suspended", "events", doc.ok(bulk),
            scope="triggers:write", path_params=path, body=doc.obj([], reason=doc.STR), body_required=False),
        ("GET", f"{w}/events/list"): doc.Op(
            "Recent events of the workspace or of one script", "events", doc.ok(doc.array(event)),
            scope="events:read", query=[doc.Query("script_path", doc.STR), doc.Query("kind", doc.STR),
                                        *filters, doc.Query("per_page", doc.int_range(1, MAX_LIMIT))]),
        ("GET", f"{w}/events/get/{{id}}"): doc.Op(
            "One event", "events", doc.ok(event), scope="events:read", path_params=event_id, may_400=True),
        ("POST", f"{w}/events/replay/{{id}}"): doc.Op(
            "Run an event again as a new job (new ledger row with replay_of)", "events",
            {**doc.ok(doc.obj(["event_id", "job_id", "replay_of"], event_id=doc.UUID, job_id=doc.UUID,
                              replay_of=doc.UUID), "created", 201),
             **doc.err(409, "the script is gone or the stored arguments no longer fit it")},
            scope="events:write", path_params=event_id, may_400=True),
    })


_document()
