"""Schedule helpers beside the generic trigger routes: preview ticks, list skipped ticks, pause.

- ``GET  /api/w/{w}/schedules/preview?cron=...&timezone=...&n=5``: the next ticks of any expression;
- ``GET  /api/w/{w}/schedules/preview/{path}?n=5``: the next ticks of a schedule (after its pause);
- ``GET  /api/w/{w}/schedules/skipped/{path}?limit=100``: ticks that did not run, and why;
- ``POST /api/w/{w}/schedules/pause/{path}`` ``{"until": "<ISO time>" | null}``: pause until a time.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiohttp import web

from headrace.core import trigger_store as store
from headrace.core.triggers import Trigger, TriggerConfigError
from headrace.plugins.triggers.schedule.config import ScheduleConfig, parse_instant
from headrace.plugins.triggers.schedule.cron import CronError, CronSchedule
from headrace.plugins.triggers.schedule.kind import iso
from headrace.plugins.triggers.schedule.sql import LIST_SKIPPED

from .. import openapi as oa
from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import DB, KINDS
from .triggers import trigger_json

routes = web.RouteTableDef()

KIND = "schedule"
MAX_PREVIEW = 100
MAX_SKIPPED = 1000


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ApiError(400, "invalid_field", f"{name} must be an integer from 1 to {maximum}", field=name)
    return value


def _ticks_json(schedule: CronSchedule, ticks: list[datetime]) -> list[dict]:
    return [{"utc": iso(t), "local": schedule.local(t).isoformat()} for t in ticks]


async def _schedule(request: web.Request, scope: str) -> Trigger:
    p = await require(request, scope)
    if request.app[KINDS].get(KIND) is None:
        raise ApiError(404, "unknown_trigger_kind", "the schedule trigger kind is not installed")
    async with request.app[DB].engine.connect() as conn:
        t = await store.get(conn, p.workspace_id, KIND, request.match_info["path"])
    if t is None:
        raise ApiError(404, "not_found", f"no schedule at {request.match_info['path']!r}")
    return t


@routes.get("/api/w/{workspace}/schedules/preview")
async def preview(request: web.Request) -> web.Response:
    await require(request, "triggers:read")
    n = _int_query(request, "n", 5, MAX_PREVIEW)
    cron = request.query.get("cron")
    if not cron:
        raise ApiError(400, "invalid_field", "cron is required (6 fields: second minute hour day month weekday)",
                       field="cron")
    try:
        schedule = CronSchedule(cron, request.query.get("timezone") or "UTC")
    except CronError as exc:
        raise ApiError(400, "invalid_field", exc.message, field=exc.field) from None
    ticks = schedule.ticks(datetime.now(timezone.utc), n)
    return json_response({"cron": schedule.expr, "timezone": schedule.timezone, "ticks": _ticks_json(schedule, ticks)})


@routes.get("/api/w/{workspace}/schedules/preview/{path:.+}")
async def preview_schedule(request: web.Request) -> web.Response:
    t = await _schedule(request, "triggers:read")
    n = _int_query(request, "n", 5, MAX_PREVIEW)
    config = ScheduleConfig.parse(t.config)
    start = datetime.now(timezone.utc)
    if config.paused_until is not None and config.paused_until > start:
        start = config.paused_until - timedelta(microseconds=1)
    ticks = config.schedule.ticks(start, n)
    return json_response({
        "path": t.path, "cron": config.schedule.expr, "timezone": config.schedule.timezone,
        "mode": t.mode, "paused_until": config.paused_until, "ticks": _ticks_json(config.schedule, ticks),
    })


@routes.get("/api/w/{workspace}/schedules/skipped/{path:.+}")
async def list_skipped(request: web.Request) -> web.Response:
    t = await _schedule(request, "triggers:read")
    limit = _int_query(request, "limit", 100, MAX_SKIPPED)
    rows = await request.app[DB].pool.fetch(LIST_SKIPPED, t.id, limit)
    return json_response([
        {"event_id": r["id"], "recorded_at": r["received_at"], "scheduled_for": r["payload"].get("scheduled_for"),
         "reason": r["payload"].get("skip_reason"), "detail": {
             k: v for k, v in r["payload"].items()
             if k not in ("scheduled_for", "skip_reason", "trigger_path", "args")}}
        for r in rows
    ])


@routes.post("/api/w/{workspace}/schedules/pause/{path:.+}")
async def pause(request: web.Request) -> web.Response:
    t = await _schedule(request, "triggers:write")
    body = await read_json(request)
    if "until" not in body:
        raise ApiError(400, "invalid_field", "until is required: an ISO 8601 time, or null to resume", field="until")
    try:
        until = parse_instant(body["until"], "until")
    except TriggerConfigError as exc:
        raise ApiError(400, "invalid_field", exc.message, field="until") from None
    config = {**t.config, "paused_until": iso(until) if until else None}
    try:
        async with request.app[DB].engine.begin() as conn:
            updated = await store.update(conn, request.app[KINDS].get(KIND), t.workspace_id, t.path,
                                         {"config": config})
    except store.TriggerInputError as exc:
        raise ApiError(exc.status, "invalid_trigger", exc.message, field=exc.field) from None
    return json_response(trigger_json(updated))


# The OpenAPI document's entries for these routes (hub/openapi.py builds the document from this table).
_W = oa.W
_TICKS = oa.array(oa.obj(["utc", "local"], utc=oa.TIME, local=oa.TIME))
_N = oa.Query("n", {"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW}, "how many ticks (default 5)")
oa.OPERATIONS.update({
    ("GET", f"{_W}/schedules/preview"): oa.Op(
        "The next ticks of a cron expression", "schedules",
        oa.ok(oa.obj(["cron", "timezone", "ticks"], cron=oa.STR, timezone=oa.STR, ticks=_TICKS)),
        scope="triggers:read",
        query=[oa.Query("cron", oa.STR, "6 fields: second minute hour day month weekday", required=True),
               oa.Query("timezone", oa.STR, "IANA time zone (default UTC)"), _N]),
    ("GET", f"{_W}/schedules/preview/{{path}}"): oa.Op(
        "The next ticks of a schedule (after its pause)", "schedules",
        oa.ok(oa.obj(["path", "cron", "timezone", "ticks"], path=oa.STR, cron=oa.STR, timezone=oa.STR,
                     mode=oa.STR, paused_until=oa.nullable(oa.TIME), ticks=_TICKS)),
        scope="triggers:read", query=[_N], path_params={"path": oa.WM_PATH}),
    ("GET", f"{_W}/schedules/skipped/{{path}}"): oa.Op(
        "Ticks of a schedule that did not run, newest first, with the reason", "schedules",
        oa.ok(oa.array(oa.obj(["event_id", "scheduled_for", "reason"], event_id=oa.UUID, recorded_at=oa.TIME,
                              scheduled_for=oa.nullable(oa.STR), reason=oa.nullable(oa.STR), detail=oa.OBJECT))),
        scope="triggers:read", path_params={"path": oa.WM_PATH},
        query=[oa.Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_SKIPPED}, "default 100")]),
    ("POST", f"{_W}/schedules/pause/{{path}}"): oa.Op(
        "Pause a schedule until a time (null: resume)", "schedules", oa.ok(oa.ref("Trigger")),
        scope="triggers:write", path_params={"path": oa.WM_PATH},
        body=oa.obj(["until"], until=oa.nullable(oa.TIME))),
})
