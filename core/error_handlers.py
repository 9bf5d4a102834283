"""Error handlers: a trigger's handler script runs once for every failed job of that trigger.

A trigger row may name ``error_handler_path`` (a script) and ``error_handler_args`` (a JSON object). When
a job made by one of the trigger's events fails (status ``failure``; a cancelled job is not a failure), the
handler is enqueued through the event ledger with the arguments::

    {"error": <the job's error object>, "event": <the failed event's envelope {"kind": ..., ...}>,
     "job_id": "<failed job id>", "trigger_path": "<trigger path>", **error_handler_args}

Its ledger row has kind ``error_handler``, the trigger's source and the dedup key ``error:<job id>``: every
server watches, and the ledger makes sure the handler runs once per failed job. Failures are noticed
through NOTIFY ``headrace_done`` (kinds set ``Event.notify_done`` when the trigger has a handler, see
:func:`wants_done_notice`) and, for jobs enqueued without it or a lost notification, by a periodic sweep
of recently completed jobs. A failing handler job does not start another handler.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import asyncpg

from .ledger import ArgsError, Event, EventSink, ScriptMissing
from .queue_sql import CHANNEL_DONE
from .triggers import Trigger

log = logging.getLogger(__name__)

KIND = "error_handler"
SWEEP_S = 2.0
# A completion may commit a little after its completed_at; sweeps overlap by this much.
SWEEP_OVERLAP = timedelta(seconds=60)
# On start, failures this recent that have no handler run yet are handled.
LOOKBACK = timedelta(hours=1)
BATCH_DELAY_S = 0.02

_FAILED = """
SELECT c.id AS job_id, c.workspace_id, c.result, e.kind, e.payload, t.id AS trigger_id,
       t.path AS trigger_path, t.error_handler_path, t.error_handler_args
FROM completed_jobs c
JOIN events e ON e.job_id = c.id
JOIN triggers t ON t.id = e.trigger_id
WHERE {where} AND c.status = 'failure' AND e.kind <> 'error_handler' AND t.error_handler_path IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM events x WHERE x.workspace_id = c.workspace_id
                  AND x.source = 'trigger:' || t.id::text AND x.dedup_key = 'error:' || c.id::text)
"""
FAILED_BY_ID = _FAILED.format(where="c.id = ANY($1::uuid[])")
FAILED_SINCE = _FAILED.format(where="c.workspace_id = ANY($1::text[]) AND c.completed_at > $2")
WORKSPACES_WITH_HANDLERS = "SELECT DISTINCT workspace_id FROM triggers WHERE error_handler_path IS NOT NULL"
RECORD_ERROR = "UPDATE triggers SET last_error = $2, last_error_at = now() WHERE id = $1"


def wants_done_notice(trigger: Trigger) -> bool:
    """What a kind passes as ``Event.notify_done``: its jobs' failures are then handled at once."""
    return trigger.error_handler_path is not None


def handler_event(row: asyncpg.Record) -> Event:
    result = row["result"]
    error = result.get("error", result) if isinstance(result, dict) else result
    payload = {
        "error": error, "event": {"kind": row["kind"], **(row["payload"] or {})},
        "job_id": str(row["job_id"]), "trigger_path": row["trigger_path"],
    }
    return Event(
        workspace_id=row["workspace_id"], source=f"trigger:{row['trigger_id']}", kind=KIND,
        script_path=row["error_handler_path"], payload=payload,
        args={**payload, **(row["error_handler_args"] or {})}, dedup_key=f"error:{row['job_id']}",
        trigger_id=row["trigger_id"], created_by=f"error_handler:{row['trigger_path']}",
    )


class ErrorHandlerRunner:
    def __init__(self, pool: asyncpg.Pool, sink: EventSink, *, dsn: str | None = None,
                 sweep_s: float = SWEEP_S):
        self.pool = pool
        self.sink = sink
        self.dsn = dsn
        self.sweep_s = sweep_s
        self._done: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._refused: set[uuid.UUID] = set()  # handler could not be enqueued: do not retry each sweep
        self._listener: asyncpg.Connection | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["ErrorHandlerRunner"]:
        task = asyncio.create_task(self.run(), name="error-handlers")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _on_done(self, _conn, _pid, _channel, payload: str) -> None:
        try:
            self._done.add(uuid.UUID(payload))
        except ValueError:
            return
        self._wake.set()

    async def _listen(self) -> None:
        if self.dsn is None or (self._listener is not None and not self._listener.is_closed()):
            return
        from .db import connect

        try:
            self._listener = await connect(self.dsn)
            await self._listener.add_listener(CHANNEL_DONE, self._on_done)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("error handlers: no NOTIFY connection (%s); sweeping only", exc)
            self._listener = None

    async def run(self) -> None:
        since = datetime.now(timezone.utc) - LOOKBACK
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        try:
            while True:
                await self._listen()
                try:
                    if self._done:
                        await asyncio.sleep(BATCH_DELAY_S)  # let a burst of completions share a query
                        ids, self._done = list(self._done), set()
                        await self.handle(await self.pool.fetch(FAILED_BY_ID, ids))
                    if loop.time() >= next_sweep:
                        started = datetime.now(timezone.utc)
                        await self.sweep(since)
                        since = started - SWEEP_OVERLAP
                        next_sweep = loop.time() + self.sweep_s
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("error handlers: %s", exc)
                self._wake.clear()
                if not self._done:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - loop.time()))
        finally:
            if self._listener is not None:
                await self._listener.close()

    async def sweep(self, since: datetime) -> int:
        workspaces = [r["workspace_id"] for r in await self.pool.fetch(WORKSPACES_WITH_HANDLERS)]
        if not workspaces:
            return 0
        return await self.handle(await self.pool.fetch(FAILED_SINCE, workspaces, since))

    async def handle(self, rows: list[asyncpg.Record]) -> int:
        """Enqueue the handler of each failed job (once: the ledger drops repeats); returns how many."""
        rows = [r for r in rows if r["job_id"] not in self._refused]
        results = await asyncio.gather(*(self._accept(r) for r in rows))
        return sum(results)

    async def _accept(self, row: asyncpg.Record) -> bool:
        try:
            accepted = await self.sink.accept(handler_event(row))
        except (ScriptMissing, ArgsError) as exc:
            self._refused.add(row["job_id"])
            message = f"error handler {row['error_handler_path']} not run for job {row['job_id']}: {exc}"
            log.warning("%s", message)
            await self.pool.execute(RECORD_ERROR, row["trigger_id"], message)
            return False
        return not accepted.duplicate


__all__ = ["ErrorHandlerRunner", "KIND", "handler_event", "wants_done_notice"]

