"""The job queue API over :mod:`queue_sql`: enqueue, claim, heartbeat, complete, retry, cancel, sweep."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

import asyncpg

from . import queue_sql as sql

# How many extra times a job may be restarted after its worker died, beyond its own retries.
ZOMBIE_RESTARTS = 2


@dataclass
class NewJob:
    workspace_id: str
    language: str
    args: dict[str, Any]
    script_path: str | None = None
    script_hash: str | None = None
    tag: str = "default"
    priority: int = 0
    scheduled_for: datetime | None = None
    created_by: str = "admin"
    parent_job: uuid.UUID | None = None
    max_retries: int = 0
    retry_delay_ms: int = 1000
    timeout_s: int | None = None
    notify_done: bool = False
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(slots=True)
class ClaimedJob:
    id: uuid.UUID
    workspace_id: str
    script_path: str | None
    script_hash: str | None
    language: str
    args: dict[str, Any]
    tag: str
    fence: int
    attempts: int
    max_retries: int
    timeout_s: int | None
    created_by: str
    parent_job: uuid.UUID | None
    canceled: bool
    canceled_reason: str | None


@dataclass
class Outcome:
    """What a finished attempt produced. A failure's result is ``{"error": {name, message, stack}}``."""

    success: bool
    result: Any
    status: str = ""

    def __post_init__(self):
        if not self.status:
            self.status = "success" if self.success else "failure"

    @classmethod
    def failure(cls, name: str, message: str, stack: str = "", status: str = "failure") -> "Outcome":
        return cls(False, {"error": {"name": name, "message": message, "stack": stack}}, status)


class JobQueue:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def enqueue(self, job: NewJob, conn: asyncpg.Connection | None = None) -> uuid.UUID:
        args = (
            job.id, job.workspace_id, job.script_path, job.script_hash, job.language,
            job.args, job.tag, job.priority, job.scheduled_for, job.created_by, job.parent_job,
            job.max_retries, job.retry_delay_ms, job.timeout_s, job.notify_done,
        )
        if conn is not None:
            await conn.execute(sql.ENQUEUE, *args)
        else:
            await self.pool.execute(sql.ENQUEUE, *args)
        return job.id

    @staticmethod
    def job_columns(jobs: list[NewJob]) -> list[list]:
        """The 15 parallel arrays that queue_sql.jobs_from_arrays() reads."""
        rows = [
            (j.id, j.workspace_id, j.script_path, j.script_hash, j.language, j.args, j.tag,
             j.priority, j.scheduled_for, j.created_by, j.parent_job, j.max_retries,
             j.retry_delay_ms, j.timeout_s, j.notify_done)
            for j in jobs
        ]
        return [list(c) for c in zip(*rows)] if rows else [[] for _ in range(15)]

    async def enqueue_many(self, jobs: list[NewJob], conn: asyncpg.Connection | None = None) -> None:
        if jobs:
            await (conn or self.pool).execute(sql.ENQUEUE_MANY, *self.job_columns(jobs))

    async def claim(self, worker: str, tags: Iterable[str], limit: int) -> list[ClaimedJob]:
        rows = await self.pool.fetch(sql.CLAIM, worker, list(tags), limit)
        # CLAIM returns ClaimedJob's fields in order: positional is the cheapest construction.
        return [ClaimedJob(*r) for r in rows]

    async def heartbeat(self, worker: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
        rows = await self.pool.fetch(sql.HEARTBEAT, ids, worker)
        return {r["id"]: r for r in rows}

    async def complete_many(
        self, done: list[tuple[uuid.UUID, int, Outcome]], conn: asyncpg.Connection | None = None
    ) -> set[uuid.UUID]:
        """Move finished jobs to completed_jobs; returns the ids that were still owned (fence matched)."""
        if not done:
            return set()
        rows = await (conn or self.pool).fetch(
            sql.COMPLETE_MANY,
            [d[0] for d in done],
            [d[1] for d in done],
            [d[2].success for d in done],
            [d[2].status for d in done],
            [d[2].result for d in done],
        )
        return {r["id"] for r in rows}

    async def retry(self, job_id: uuid.UUID, fence: int) -> float | None:
        """Put a failed attempt back after its backoff; seconds until it is due, None if not owned."""
        return await self.pool.fetchval(sql.RETRY, job_id, fence)

    async def requeue(self, worker: str, jobs: list[tuple[uuid.UUID, int]]) -> list[uuid.UUID]:
        """Give back jobs this worker claimed and will not finish (with the fence it claimed them with)."""
        rows = await self.pool.fetch(sql.REQUEUE_OWN, [j[0] for j in jobs], [j[1] for j in jobs], worker)
        return [r["id"] for r in rows]

    async def sweep_zombies(self, after_s: float) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Requeue jobs of dead workers; fail those that exhausted their restarts."""
        async with self.pool.acquire() as conn:
            requeued = [r["id"] for r in await conn.fetch(sql.REQUEUE_ZOMBIES, after_s, ZOMBIE_RESTARTS)]
            failed = [r["id"] for r in await conn.fetch(sql.FAIL_ZOMBIES, after_s, ZOMBIE_RESTARTS)]
        return requeued, failed

    async def cancel(self, workspace_id: str, job_id: uuid.UUID, reason: str) -> str | None:
        """Cancel a job: 'completed' if it was waiting (moved at once), 'signaled' if running, None if unknown."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(sql.MARK_CANCELED, job_id, workspace_id, reason)
            if row is None:
                return None
            if row["running"]:
                return "signaled"
            moved = await conn.fetchrow(sql.COMPLETE_CANCELED_WAITING, job_id)
            # If a worker claimed it in between, that worker sees the flag and stops it.
            return "completed" if moved is not None else "signaled"

    async def append_logs(self, chunks: list[tuple[uuid.UUID, str]]) -> None:
        if chunks:
            # PostgreSQL text cannot hold NUL; a job printing one must not lose its log.
            await self.pool.execute(
                sql.APPEND_LOGS, [c[0] for c in chunks], [c[1].replace("\x00", "\ufffd") for c in chunks]
            )

    async def logs(self, job_id: uuid.UUID) -> str:
        return await self.pool.fetchval(sql.GET_LOGS, job_id) or ""

    async def get(self, workspace_id: str, job_id: uuid.UUID) -> tuple[str, dict] | None:
        """('completed' | 'queued', row) for a job of this workspace, or None."""
        async with self.pool.acquire() as conn:
            # Queue first: a job leaves the queue and enters completed_jobs in one transaction, so
            # this order cannot miss a job that completes between the two reads.
            row = await conn.fetchrow(sql.GET_QUEUED, job_id, workspace_id)
            if row is not None:
                return "queued", dict(row)
            row = await conn.fetchrow(sql.GET_COMPLETED, job_id, workspace_id)
            if row is not None:
                return "completed", dict(row)
        return None

    async def list_jobs(self, workspace_id: str, script_path: str | None, limit: int) -> list[dict]:
        async with self.pool.acquire() as conn:
            queued = await conn.fetch(sql.LIST_QUEUED, workspace_id, script_path, limit)
            done = await conn.fetch(sql.LIST_COMPLETED, workspace_id, script_path, limit)
        return [dict(r, type="QueuedJob") for r in queued] + [
            dict(r, type="CompletedJob") for r in done
        ]

