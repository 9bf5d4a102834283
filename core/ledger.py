"""The event ledger: the one way an event becomes a job.

``EventSink.accept`` writes the event row and its job in one transaction, so that a source may be
acknowledged (Kafka offset committed, SMTP 250, HTTP 201) as soon as it returns. The same mechanism
gives deduplication (a unique key per source), captures (the row with no job), suspended events (a job
that no worker claims until resumed), replay (a new job from a row) and an audit trail.

Concurrent calls are written in batches by one writer task: under load many events share one
transaction, which is what lets webhook intake run at thousands of committed events per second.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from . import ledger_sql as sql
from .args import ArgsError, check_args
from .queue import JobQueue, NewJob

log = logging.getLogger(__name__)

BATCH_MAX = 1000
WRITERS = 2
SCRIPT_CACHE_S = 1.0
# Suspended jobs wait in the queue with this date: no worker claims them until they are resumed.
SUSPENDED_UNTIL = datetime(9999, 1, 1, tzinfo=timezone.utc)
# A script whose main() takes its arguments from a preprocessor(event) receives the event under this
# key; the language runner calls preprocessor(event) and passes what it returns to main().
EVENT_ARG = "__headrace_event"
PREPROCESSOR_KEY = "x-preprocessor"


class ScriptMissing(LookupError):
    pass


@dataclass
class Event:
    """One event as a trigger hands it over."""

    workspace_id: str
    source: str  # "trigger:<id>" or "script:<path>": the scope of dedup keys
    kind: str
    script_path: str
    payload: dict[str, Any]  # the kind's payload; the envelope adds "kind"
    args: dict[str, Any] | None = None  # main()'s args when the script has no preprocessor
    dedup_key: str | None = None
    mode: str = "enabled"  # enabled | suspended | capture
    trigger_id: uuid.UUID | None = None
    created_by: str = "trigger"
    notify_done: bool = False
    replay_of: uuid.UUID | None = None
    script_hash: str | None = None  # run this version instead of the path's latest
    job_options: dict[str, Any] = field(default_factory=dict)  # NewJob fields: tag, timeout_s...

    @property
    def envelope(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.payload}


@dataclass
class Accepted:
    event_id: uuid.UUID
    job_id: uuid.UUID | None
    status: str  # queued | suspended | captured
    duplicate: bool = False


@dataclass
class _Pending:
    event: Event
    event_id: uuid.UUID
    job: NewJob | None
    status: str
    future: asyncio.Future


class EventSink:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.queue = JobQueue(pool)
        self._pending: list[_Pending] = []
        self._ready = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._scripts: dict[tuple[str, str], tuple[float, asyncpg.Record]] = {}
        self._versions: dict[tuple[str, str], asyncpg.Record] = {}  # a version never changes

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="event-ledger")

    async def close(self) -> None:
        if self._writer is not None:
            # Write what was accepted before stopping.
            while self._pending or self._inflight:
                await asyncio.sleep(0.01)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def script(self, workspace_id: str, path: str) -> asyncpg.Record:
        key = (workspace_id, path)
        hit = self._scripts.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self.pool.fetchrow(sql.LATEST_SCRIPT, workspace_id, path)
        if row is None:
            raise ScriptMissing(f"no script at path {path!r}")
        if len(self._scripts) > 10_000:
            self._scripts.clear()
        self._scripts[key] = (now + SCRIPT_CACHE_S, row)
        return row

    def forget_script(self, workspace_id: str, path: str) -> None:
        """Drop a cached path lookup (a new version was saved or the script archived on this server)."""
        self._scripts.pop((workspace_id, path), None)

    async def script_by_hash(self, workspace_id: str, script_hash: str) -> asyncpg.Record:
        """One version (path, hash, language, schema); cached for good, since versions are immutable."""
        key = (workspace_id, script_hash)
        row = self._versions.get(key)
        if row is None:
            row = await self.pool.fetchrow(sql.SCRIPT_BY_HASH, workspace_id, script_hash)
            if row is None:
                raise ScriptMissing(f"no script version {script_hash!r}")
            if len(self._versions) > 10_000:
                self._versions.clear()
            self._versions[key] = row
        return row

    async def save_state(self, trigger_id: uuid.UUID, state: dict[str, Any]) -> None:
        """Persist a trigger kind's own state (a schedule's last tick, a stream cursor...)."""
        await self.pool.execute(sql.SAVE_TRIGGER_STATE, trigger_id, state)

    async def job_args(self, event: Event, script: asyncpg.Record) -> dict[str, Any]:
        """What the job receives: the event for a preprocessor, else main()'s checked arguments."""
        if script["schema"].get(PREPROCESSOR_KEY):
            return {EVENT_ARG: event.envelope}
        args = event.args if event.args is not None else {"event": event.envelope}
        return check_args(script["hash"], script["schema"], args)

    async def accept(self, event: Event) -> Accepted:
        """Record the event (and its job, unless captured); returns once committed.

        Raises ScriptMissing when the script does not exist and ArgsError when the event's arguments
        do not fit main(): nothing is recorded then, and the source should refuse the event.
        """
        job = None
        status = {"enabled": "queued", "suspended": "suspended", "capture": "captured"}[event.mode]
        if event.mode != "capture":
            if event.script_hash is not None:
                script = await self.script_by_hash(event.workspace_id, event.script_hash)
            else:
                script = await self.script(event.workspace_id, event.script_path)
            job = NewJob(
                workspace_id=event.workspace_id, language=script["language"],
                args=await self.job_args(event, script), script_path=event.script_path,
                script_hash=script["hash"], created_by=event.created_by,
                notify_done=event.notify_done,
                **event.job_options,
            )
            if event.mode == "suspended":
                job.scheduled_for = SUSPENDED_UNTIL
        fut = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(event, uuid.uuid4(), job, status, fut))
        self._ready.set()
        return await fut

    async def _write_loop(self) -> None:
        # Up to WRITERS batches in flight: the next batch is written while the previous one commits.
        slots = asyncio.Semaphore(WRITERS)
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                await slots.acquire()
                batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
                task = asyncio.create_task(self._write_batch(batch))
                self._inflight.add(task)
                task.add_done_callback(lambda t: (self._inflight.discard(t), slots.release()))

    async def _write_batch(self, batch: list[_Pending]) -> None:
        # Concurrent batches take dedup-key locks in one order, so that they cannot deadlock.
        batch.sort(key=lambda p: p.event.dedup_key or "")
        try:
            results = await self._write(batch)
        except Exception as exc:  # the callers see the failure; nothing was committed
            log.error("writing %d events failed: %s", len(batch), exc)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for p, acc in zip(batch, results):
            if not p.future.done():
                p.future.set_result(acc)

    async def _write(self, batch: list[_Pending]) -> list[Accepted]:
        jobs = [p.job for p in batch if p.job is not None]
        async with self.pool.acquire() as conn:
            inserted = {
                r["id"] for r in await conn.fetch(
                    sql.INSERT_EVENTS_AND_JOBS,
                    [p.event_id for p in batch],
                    [p.event.workspace_id for p in batch],
                    [p.event.source for p in batch],
                    [p.event.trigger_id for p in batch],
                    [p.event.kind for p in batch],
                    [p.event.script_path for p in batch],
                    [p.event.payload for p in batch],
                    [p.event.dedup_key for p in batch],
                    [p.job.id if p.job else None for p in batch],
                    [p.status for p in batch],
                    [p.event.replay_of for p in batch],
                    *self.queue.job_columns(jobs),
                )
            }
            dupes = [p for p in batch if p.event_id not in inserted]
            existing = {}
            if dupes:
                rows = await conn.fetch(
                    sql.EXISTING_BY_KEY,
                    [p.event.workspace_id for p in dupes],
                    [p.event.source for p in dupes],
                    [p.event.dedup_key for p in dupes],
                )
                existing = {(r["workspace_id"], r["source"], r["dedup_key"]): r for r in rows}
        results = []
        for p in batch:
            if p.event_id in inserted:
                results.append(Accepted(p.event_id, p.job.id if p.job else None, p.status))
            else:
                first = existing[(p.event.workspace_id, p.event.source, p.event.dedup_key)]
                results.append(Accepted(first["id"], first["job_id"], first["status"], duplicate=True))
        return results


# -- reading the ledger and acting on suspended events (the API's events routes) -----------------

async def get_event(pool: asyncpg.Pool, workspace_id: str, event_id: uuid.UUID) -> dict | None:
    row = await pool.fetchrow(sql.GET_EVENT, workspace_id, event_id)
    return dict(row) if row else None


async def list_trigger_events(pool: asyncpg.Pool, workspace_id: str, trigger_id: uuid.UUID, *,
                              status: str | None = None, limit: int = 100) -> list[dict]:
    return [dict(r) for r in await pool.fetch(sql.LIST_TRIGGER_EVENTS, workspace_id, trigger_id, status, limit)]


async def list_events(pool: asyncpg.Pool, workspace_id: str, *, script_path: str | None = None,
                      kind: str | None = None, status: str | None = None, limit: int = 100) -> list[dict]:
    return [dict(r) for r in await pool.fetch(sql.LIST_EVENTS, workspace_id, script_path, kind, status, limit)]


async def resume_suspended(pool: asyncpg.Pool, workspace_id: str, trigger_id: uuid.UUID) -> list[uuid.UUID]:
    """Make every job kept while the trigger was suspended due now; returns their ids."""
    from .queue_sql import CHANNEL_JOBS

    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(sql.RESUME_SUSPENDED, workspace_id, trigger_id, SUSPENDED_UNTIL)
        for tag in {r["tag"] for r in rows}:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL_JOBS, tag)
    return [r["id"] for r in rows]


async def cancel_suspended(pool: asyncpg.Pool, workspace_id: str, trigger_id: uuid.UUID,
                           reason: str) -> list[uuid.UUID]:
    """Cancel every job kept while the trigger was suspended (they complete as canceled)."""
    rows = await pool.fetch(sql.CANCEL_SUSPENDED, workspace_id, trigger_id, SUSPENDED_UNTIL, reason)
    return [r["id"] for r in rows]


__all__ = ["Accepted", "ArgsError", "Event", "EventSink", "ScriptMissing", "EVENT_ARG", "SUSPENDED_UNTIL"]
