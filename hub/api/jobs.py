"""Running scripts and reading jobs, on Windmill's routes (see shared/windmill-client-routes.md)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from aiohttp import web

from headrace.core.args import ArgsError
from headrace.core.ledger import Accepted, Event, ScriptMissing
from headrace.core.tokens import Principal

from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import QUEUE, SINK, WAITER
from ..request_args import args_from_request, response_from_job, webhook_options

routes = web.RouteTableDef()

DEFAULT_WAIT_S = 300.0
INT32_MAX = 2**31 - 1


def _job_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise ApiError(400, "invalid_id", f"{request.match_info['id']!r} is not a job id") from None


def _int_query(request: web.Request, name: str, *, minimum: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"query parameter {name!r} must be an integer", field=name) from None
    if value < minimum:
        raise ApiError(400, "invalid_query", f"query parameter {name!r} must be >= {minimum}", field=name)
    if value > INT32_MAX:  # database columns are 32-bit; larger values also overflow timedelta
        raise ApiError(400, "invalid_query", f"query parameter {name!r} must be <= {INT32_MAX}", field=name)
    return value


async def _script_for(request: web.Request, p: Principal):
    """The script version to run (cached by the sink: path ~1 s, hash for good), access checked."""
    kind, ref = request.match_info["kind"], request.match_info["ref"]
    sink = request.app[SINK]
    try:
        if kind == "p":
            script = await sink.script(p.workspace_id, ref)
        else:
            script = await sink.script_by_hash(p.workspace_id, ref)
    except ScriptMissing:
        what = "path" if kind == "p" else "version"
        raise ApiError(404, "script_not_found", f"no script at {what} {ref!r}") from None
    if p.script_path is not None and p.script_path != script["path"]:
        raise ApiError(403, "forbidden", f"this token may only run {p.script_path!r}")
    return script


def _job_options(request: web.Request) -> dict:
    """NewJob fields from the query (Windmill's names; unknown keys are ignored)."""
    delay = _int_query(request, "scheduled_in_secs")
    parent = request.query.get("parent_job") or None
    if parent is not None:
        try:
            parent = uuid.UUID(parent)
        except ValueError:
            raise ApiError(400, "invalid_query", "parent_job must be a job id", field="parent_job") from None
    return {
        "tag": request.query.get("tag") or "default",
        "priority": _int_query(request, "priority") or 0,
        "scheduled_for": datetime.now(timezone.utc) + timedelta(seconds=delay) if delay else None,
        "parent_job": parent,
        "max_retries": _int_query(request, "max_retries") or 0,
        "timeout_s": _int_query(request, "timeout", minimum=1),
    }


async def _accept(request: web.Request, p: Principal, *, job_id: uuid.UUID, notify_done: bool) -> Accepted:
    """Record the call in the event ledger with its job (one transaction); dedup by Idempotency-Key."""
    script = await _script_for(request, p)
    raw, headers = webhook_options(request)
    args, payload = await args_from_request(request, raw=raw, headers=headers)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 255:
        raise ApiError(400, "invalid_header", "Idempotency-Key is longer than 255 characters",
                       field="Idempotency-Key")
    event = Event(
        workspace_id=p.workspace_id, source=f"script:{script['path']}", kind="webhook",
        script_path=script["path"], payload=payload, args=args, dedup_key=key,
        created_by=p.owner, notify_done=notify_done,
        script_hash=script["hash"] if request.match_info["kind"] == "h" else None,
        job_options={**_job_options(request), "id": job_id},
    )
    try:
        return await request.app[SINK].accept(event)
    except ArgsError as exc:
        message = exc.message
        if payload["body"] is not None and not isinstance(payload["body"], dict):
            message += "; the body is not a JSON object, so it was passed as the single argument 'body'"
        raise ApiError(400, "invalid_args", message, field=exc.field) from None
    except ScriptMissing as exc:  # archived between the lookup and the write
        raise ApiError(404, "script_not_found", str(exc)) from None


@routes.post(r"/api/w/{workspace}/jobs/run/{kind:[ph]}/{ref:.+}")
async def run_async(request: web.Request) -> web.Response:
    p = await require(request, "jobs:run", allow_query=True)
    acc = await _accept(request, p, job_id=uuid.uuid4(), notify_done=False)
    if acc.job_id is None:
        raise ApiError(409, "no_job", f"event {acc.event_id} with this Idempotency-Key has no job",
                       event_id=str(acc.event_id))
    # Both Windmill clients read the bare UUID from the text body.
    return web.Response(text=str(acc.job_id), status=200 if acc.duplicate else 201,
                        content_type="text/plain", headers={"X-Headrace-Event-Id": str(acc.event_id)})


@routes.post(r"/api/w/{workspace}/jobs/run_wait_result/{kind:[ph]}/{ref:.+}")
async def run_wait_result(request: web.Request) -> web.Response:
    p = await require(request, "jobs:run", allow_query=True)
    wait_s = float(_int_query(request, "wait_timeout", minimum=1) or DEFAULT_WAIT_S)
    waiter = request.app[WAITER]
    job_id = uuid.uuid4()
    # Registered before the job exists, so that a fast job's notification cannot be missed.
    fut = waiter.register(job_id)
    try:
        acc = await _accept(request, p, job_id=job_id, notify_done=True)
    except BaseException:
        waiter.forget(job_id, fut)
        raise
    if acc.duplicate:
        waiter.forget(job_id, fut)
        if acc.job_id is None:
            raise ApiError(409, "no_job", f"event {acc.event_id} with this Idempotency-Key has no job",
                           event_id=str(acc.event_id))
        job_id = acc.job_id
        fut = waiter.register(job_id)
    row = await wait_for_job(request, p.workspace_id, job_id, fut, wait_s, check_first=acc.duplicate)
    return response_from_job(row)


async def wait_for_job(request: web.Request, workspace_id: str, job_id: uuid.UUID, fut, wait_s: float,
                       *, check_first: bool = False) -> dict:
    """The completed job's row once it finished (``fut`` from waiter.register); 408 on timeout."""
    queue, waiter = request.app[QUEUE], request.app[WAITER]

    async def is_done() -> bool:
        found = await queue.get(workspace_id, job_id)
        return found is not None and found[0] == "completed"

    if check_first and await is_done():
        waiter.forget(job_id, fut)
    elif not await waiter.wait(job_id, fut, wait_s, is_done):
        raise ApiError(408, "timeout", f"job {job_id} did not finish within {wait_s:g} s; it keeps running",
                       job_id=str(job_id))
    found = await queue.get(workspace_id, job_id)
    if found is None or found[0] != "completed":  # deleted meanwhile: should not happen
        raise ApiError(404, "job_not_found", f"no completed job {job_id} in this workspace")
    return found[1]


def job_result_response(row: dict) -> web.Response:
    return response_from_job(row)


def job_json(kind: str, row: dict) -> dict:
    common = {
        "id": row["id"], "workspace_id": row["workspace_id"], "script_path": row["script_path"],
        "script_hash": row["script_hash"], "language": row["language"], "args": row["args"],
        "tag": row["tag"], "created_at": row["created_at"], "created_by": row["created_by"],
        "parent_job": row["parent_job"], "started_at": row["started_at"],
        "job_kind": "script", "attempts": row["attempts"],
    }
    if kind == "completed":
        duration = None
        if row["started_at"] is not None:
            duration = int((row["completed_at"] - row["started_at"]).total_seconds() * 1000)
        return {**common, "type": "CompletedJob", "success": row["success"], "status": row["status"],
                "result": row["result"], "completed_at": row["completed_at"], "duration_ms": duration,
                "canceled": row["status"] == "canceled", "running": False}
    return {**common, "type": "QueuedJob", "running": row["running"],
            "scheduled_for": row["scheduled_for"], "canceled": row["canceled"],
            "canceled_reason": row["canceled_reason"]}


async def _find(request: web.Request, scope: str) -> tuple[str, dict]:
    p = await require(request, scope)
    job_id = _job_id(request)
    found = await request.app[QUEUE].get(p.workspace_id, job_id)
    if found is None:
        raise ApiError(404, "job_not_found", f"no job {job_id} in this workspace")
    return found


@routes.get("/api/w/{workspace}/jobs_u/get/{id}")
async def get_job(request: web.Request) -> web.Response:
    kind, row = await _find(request, "jobs:read")
    body = job_json(kind, row)
    if request.query.get("no_logs") not in ("true", "1"):
        body["logs"] = await request.app[QUEUE].logs(row["id"])
    return json_response(body)


@routes.get("/api/w/{workspace}/jobs_u/get_logs/{id}")
async def get_logs(request: web.Request) -> web.Response:
    _, row = await _find(request, "jobs:read")
    return web.Response(text=await request.app[QUEUE].logs(row["id"]), content_type="text/plain")


@routes.get("/api/w/{workspace}/jobs_u/completed/get_result/{id}")
async def get_result(request: web.Request) -> web.Response:
    kind, row = await _find(request, "jobs:read")
    if kind != "completed":
        raise ApiError(404, "not_completed", f"job {row['id']} has not completed yet")
    return json_response(row["result"])


@routes.get("/api/w/{workspace}/jobs_u/completed/get_result_maybe/{id}")
async def get_result_maybe(request: web.Request) -> web.Response:
    kind, row = await _find(request, "jobs:read")
    if kind == "completed":
        return json_response({"completed": True, "started": True, "success": row["success"],
                              "result": row["result"]})
    return json_response({"completed": False, "started": bool(row["running"]), "success": None,
                          "result": None})


@routes.post("/api/w/{workspace}/jobs_u/queue/cancel/{id}")
async def cancel_job(request: web.Request) -> web.Response:
    p = await require(request, "jobs:cancel")
    job_id = _job_id(request)
    body = await read_json(request, default={})
    reason = body.get("reason") or f"canceled by {p.owner}"
    if not isinstance(reason, str):
        raise ApiError(400, "invalid_field", "reason must be a string", field="reason")
    state = await request.app[QUEUE].cancel(p.workspace_id, job_id, reason)
    if state is None:
        found = await request.app[QUEUE].get(p.workspace_id, job_id)
        if found is None:
            raise ApiError(404, "job_not_found", f"no job {job_id} in this workspace")
        raise ApiError(409, "already_completed", f"job {job_id} has already completed")
    return web.Response(text=f"job {job_id} canceled ({state})", content_type="text/plain")


@routes.get("/api/w/{workspace}/jobs/list")
async def list_jobs(request: web.Request) -> web.Response:
    p = await require(request, "jobs:read")
    limit = min(_int_query(request, "per_page", minimum=1) or 100, 1000)
    rows = await request.app[QUEUE].list_jobs(p.workspace_id, request.query.get("script_path_exact"), limit)
    return json_response(rows)
