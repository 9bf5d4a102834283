"""Server-sent events of one job's progress: queued, started, log chunks, then the result.

The end comes from the job-completion NOTIFY (the hub's JobWaiter); "started" and log chunks are
polled every POLL_S, which is cheap (one indexed query each) and frequent enough for a progress view.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from headrace.hub.http import dumps
from headrace.hub.keys import DB, QUEUE, WAITER

POLL_S = 0.25

NEW_LOGS = """
SELECT id, chunk FROM job_logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT 500
"""


async def _send(resp: web.StreamResponse, event: str, data: Any) -> None:
    await resp.write(f"event: {event}\ndata: {dumps(data)}\n\n".encode())


def _final(row: dict) -> tuple[str, dict]:
    body = {"job_id": str(row["id"]), "success": row["success"], "status": row["status"]}
    if row["success"]:
        return "result", {**body, "result": row["result"]}
    result = row["result"]
    error = result.get("error") if isinstance(result, dict) else None
    return "error", {**body, "error": error if isinstance(error, dict) else {"message": "job failed"}}


async def stream_job(request: web.Request, workspace_id: str, job_id: uuid.UUID, fut: asyncio.Future,
                     timeout_s: float, *, status: int = 200, extra: dict | None = None) -> web.StreamResponse:
    """Stream the job until it completes or ``timeout_s`` passes; ``fut`` is from JobWaiter.register."""
    app = request.app
    queue, waiter, pool = app[QUEUE], app[WAITER], app[DB].pool
    resp = web.StreamResponse(status=status, headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "X-Headrace-Job-Id": str(job_id),
    })
    await resp.prepare(request)
    await _send(resp, "queued", {"job_id": str(job_id), **(extra or {})})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last_log, started = 0, False
    try:
        while True:
            done = fut.done()
            if not done:
                try:
                    await asyncio.wait_for(asyncio.shield(fut), POLL_S)
                    done = True
                except TimeoutError:
                    pass
            found = await queue.get(workspace_id, job_id)
            if found is not None and not started and (found[0] == "completed" or found[1].get("running")):
                started = True
                await _send(resp, "started", {"job_id": str(job_id), "started_at": found[1]["started_at"]})
            for row in await pool.fetch(NEW_LOGS, job_id, last_log):
                last_log = row["id"]
                await _send(resp, "log", {"chunk": row["chunk"]})
            if found is None:
                await _send(resp, "error", {"job_id": str(job_id), "error": {"message": "job not found"}})
                break
            if found[0] == "completed":
                # Logs are flushed before completion, so the read above saw them all.
                await _send(resp, *_final(found[1]))
                break
            if done and found[0] != "completed":
                fut = loop.create_future()  # a notification raced the read: keep polling
            if loop.time() > deadline:
                await _send(resp, "timeout", {"job_id": str(job_id),
                                              "message": f"job did not finish within {timeout_s:g} s; it keeps running"})
                break
    except (ConnectionResetError, asyncio.CancelledError):
        waiter.forget(job_id, fut)
        raise
    waiter.forget(job_id, fut)
    await resp.write_eof()
    return resp
