"""The worker loop: claim jobs in batches, run them in N slots, heartbeat, complete in batches.

One asyncio task per running job; four background tasks per worker: the claimer (woken by NOTIFY),
the heartbeat (which also delivers cancel flags and lost leases), the completer (which flushes logs
then completes finished jobs in one statement) and the zombie sweep.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from . import queue_sql as sql
from .config import Settings
from .languages import JobContext, LanguageCatalog
from .process import kill_group
from .queue import ClaimedJob, JobQueue, Outcome
from .tokens import JOB_SCOPES, TOKEN_PREFIX, hash_token, new_token

log = logging.getLogger(__name__)

CLAIM_BATCH = 500
IDLE_POLL_S = 1.0  # also picks up jobs whose scheduled_for has come
LOG_FLUSH_S = 0.1
# A job without its own timeout still has its token expire this long after it starts.
DEFAULT_TOKEN_TTL_S = 24 * 3600


@dataclass
class _Running:
    job: ClaimedJob
    ctx: JobContext
    task: asyncio.Task | None = None
    stop_reason: Outcome | None = None  # set when the job is canceled, timed out or lost
    lost: bool = False
    finishing: bool = False  # outcome handed to the completer: no more cancels


@dataclass
class _Finished:
    job: ClaimedJob
    outcome: Outcome
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        languages: LanguageCatalog,
        settings: Settings,
        *,
        slots: int | None = None,
        tags: tuple[str, ...] = ("default",),
        name: str | None = None,
        dsn: str | None = None,
    ):
        self.queue = JobQueue(pool)
        self.pool = pool
        self.languages = languages
        self.settings = settings
        self.slots = slots or settings.worker_slots
        self.tags = tags
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.dsn = dsn
        self.running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._finished: list[_Finished] = []
        self._finished_ready = asyncio.Event()
        self._logs: list[tuple[uuid.UUID, str]] = []
        self._scripts: dict[tuple[str, str], str] = {}
        self._stopping = False
        self.jobs_dir = Path(tempfile.mkdtemp(prefix="headrace-jobs-"))
        self.completed_count = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until cancelled; then stop claiming, cancel running jobs and flush what finished."""
        listener = await self._listen()
        tasks = [
            asyncio.create_task(self._claim_loop(), name="claim"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._complete_loop(), name="complete"),
            asyncio.create_task(self._log_loop(), name="logs"),
            asyncio.create_task(self._sweep_loop(), name="sweep"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self._stopping = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._abandon_running()
            if listener is not None:
                await listener.close()
            shutil.rmtree(self.jobs_dir, ignore_errors=True)

    async def _listen(self) -> asyncpg.Connection | None:
        if self.dsn is None:
            return None
        from .db import connect

        conn = await connect(self.dsn)
        await conn.add_listener(sql.CHANNEL_JOBS, self._on_jobs)
        await conn.add_listener(sql.CHANNEL_CANCEL, self._on_cancel)
        return conn

    def _on_jobs(self, conn, pid, channel, payload) -> None:
        if payload in self.tags:
            self._wake.set()

    def _on_cancel(self, conn, pid, channel, payload) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        if job_id in self.running:
            # The flag itself is read from the row on the next heartbeat; ping now.
            asyncio.get_running_loop().create_task(self._heartbeat_once())

    # -- claiming and running -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            free = self.slots - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            try:
                jobs = await self.queue.claim(self.name, self.tags, min(free, CLAIM_BATCH))
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("claim failed: %s", exc)
                await asyncio.sleep(IDLE_POLL_S)
                continue
            for job in jobs:
                self._start(job)
            if len(jobs) < free:
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                except asyncio.TimeoutError:
                    pass

    def _start(self, job: ClaimedJob) -> None:
        ctx = JobContext(
            id=job.id, workspace_id=job.workspace_id, script_path=job.script_path,
            script_hash=job.script_hash, content="", args=job.args,
            log=lambda text, _id=job.id: self._logs.append((_id, text)),
        )
        entry = _Running(job, ctx)
        self.running[job.id] = entry
        entry.task = asyncio.create_task(self._run_job(entry))

    async def _run_job(self, entry: _Running) -> None:
        job = entry.job
        try:
            if job.canceled:
                outcome = _canceled(job.canceled_reason)
            else:
                outcome = await self._attempt(entry)
            if entry.stop_reason is not None:
                outcome = entry.stop_reason
            if not entry.lost:
                entry.finishing = True
                await self._finish(job, outcome)
        except Exception:  # never lose a job to a worker bug: record it as failed
            log.exception("job %s crashed the worker loop", job.id)
            await self._finish(job, Outcome.failure("WorkerError", traceback.format_exc()))
        finally:
            self.running.pop(job.id, None)
            if entry.ctx.job_dir is not None:
                shutil.rmtree(entry.ctx.job_dir, ignore_errors=True)
            self._slot_free.set()

    async def _attempt(self, entry: _Running) -> Outcome:
        job, ctx = entry.job, entry.ctx
        language = self.languages.resolve(job.language)
        if language is None:
            return Outcome.failure(
                "UnknownLanguage",
                f"no plugin provides language {job.language!r}; available: {', '.join(self.languages.names())}",
            )
        if job.script_hash is not None:
            ctx.content = await self._script_content(job.workspace_id, job.script_hash)
        if language.isolated:
            await self._prepare_isolated(job, ctx, language.file_name)
        run = asyncio.ensure_future(language.run(ctx))
        timeout = job.timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(run), timeout)
        except asyncio.TimeoutError:
            entry.stop_reason = Outcome.failure(
                "Timeout", f"Job exceeded its timeout of {timeout} s and was killed"
            )
            await self._stop(entry, run)
            return entry.stop_reason
        except asyncio.CancelledError:
            # cancel, lost lease or worker shutdown: _stop() was already called by whoever cancelled
            await self._stop(entry, run)
            if entry.stop_reason is None:
                raise
            return entry.stop_reason
        except Exception as exc:
            return Outcome.failure(type(exc).__name__, str(exc), traceback.format_exc())

    async def _stop(self, entry: _Running, run: asyncio.Future) -> None:
        """SIGTERM every process group of the job, SIGKILL after the grace period, then end the task."""
        groups = list(entry.ctx.process_groups)
        for pgid in groups:
            kill_group(pgid, signal.SIGTERM)
        if groups:
            deadline = time.monotonic() + self.settings.kill_grace_s
            while time.monotonic() < deadline and not run.done():
                await asyncio.sleep(0.05)
        for pgid in list(entry.ctx.process_groups) + groups:
            kill_group(pgid, signal.SIGKILL)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)

    async def _script_content(self, workspace_id: str, script_hash: str) -> str:
        key = (workspace_id, script_hash)
        if key not in self._scripts:
            content = await self.pool.fetchval(sql.GET_SCRIPT_CONTENT, workspace_id, script_hash)
            if content is None:
                raise LookupError(f"script version {script_hash} does not exist")
            self._scripts[key] = content
        return self._scripts[key]

    async def _prepare_isolated(self, job: ClaimedJob, ctx: JobContext, file_name: str) -> None:
        ctx.job_dir = self.jobs_dir / str(job.id)
        ctx.job_dir.mkdir(mode=0o700)
        (ctx.job_dir / "args.json").write_text(json.dumps(job.args))
        (ctx.job_dir / file_name).write_text(ctx.content)
        token = new_token()
        ttl = (job.timeout_s or DEFAULT_TOKEN_TTL_S) + 60
        await self.pool.execute(
            sql.INSERT_JOB_TOKEN, hash_token(token), token[: len(TOKEN_PREFIX) + 6],
            job.workspace_id, job.created_by, JOB_SCOPES, job.id, float(ttl),
        )
        ctx.env = job_environment(job, token, self.settings.api_base_url, ctx.job_dir)

    # -- finishing ------------------------------------------------------------------------

    async def _finish(self, job: ClaimedJob, outcome: Outcome) -> None:
        item = _Finished(job, outcome)
        self._finished.append(item)
        self._finished_ready.set()
        await item.done

    async def _complete_loop(self) -> None:
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            batch, self._finished = self._finished, []
            try:
                await self._flush_logs()
                await self._complete(batch)
            except Exception as exc:
                log.error("completing %d jobs failed, will retry: %s", len(batch), exc)
                self._finished = batch + self._finished
                self._finished_ready.set()
                await asyncio.sleep(0.5)
                continue
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)

    async def _complete(self, batch: list[_Finished]) -> None:
        to_complete = []
        for item in batch:
            job, outcome = item.job, item.outcome
            if outcome.status == "failure" and job.attempts <= job.max_retries:
                if await self.queue.retry(job.id, job.fence):
                    continue
            to_complete.append((job.id, job.fence, outcome))
        done = await self.queue.complete_many(to_complete)
        self.completed_count += len(done)

    async def _flush_logs(self) -> None:
        if self._logs:
            chunks, self._logs = self._logs, []
            await self.queue.append_logs(chunks)

    async def _log_loop(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_S)
            try:
                await self._flush_logs()
            except Exception as exc:
                log.warning("log flush failed: %s", exc)

    # -- liveness -------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._heartbeat_once()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _heartbeat_once(self) -> None:
        entries = [e for e in self.running.values() if e.task is not None]
        if not entries:
            return
        owned = await self.queue.heartbeat(self.name, [e.job.id for e in entries])
        for entry in entries:
            row = owned.get(entry.job.id)
            if entry.stop_reason is not None or entry.finishing or entry.task.done():
                continue
            if row is None or row["fence"] != entry.job.fence:
                if entry.job.id in self.running:
                    log.warning("job %s was requeued by another process; abandoning it", entry.job.id)
                    entry.lost = True
                    entry.stop_reason = Outcome.failure("LeaseLost", "job was requeued")
                    entry.task.cancel()
            elif row["canceled"]:
                entry.stop_reason = _canceled(row["canceled_reason"])
                entry.task.cancel()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.settings.zombie_after_s / 2, 0.5))
            try:
                requeued, failed = await self.queue.sweep_zombies(self.settings.zombie_after_s)
                if requeued or failed:
                    log.warning("zombie sweep: requeued %s, failed %s", requeued, failed)
            except Exception as exc:
                log.warning("zombie sweep failed: %s", exc)

    async def _abandon_running(self) -> None:
        """On shutdown, kill running jobs; their rows are requeued by the zombie sweep."""
        for entry in list(self.running.values()):
            entry.lost = True
            if entry.task is not None:
                entry.task.cancel()
        await asyncio.gather(
            *(e.task for e in list(self.running.values()) if e.task), return_exceptions=True
        )


def _canceled(reason: str | None) -> Outcome:
    return Outcome.failure("Canceled", f"Job canceled: {reason or 'no reason given'}", status="canceled")


def job_environment(job: ClaimedJob, token: str, api_url: str, job_dir: Path) -> dict[str, str]:
    """A cleared environment: the job's identity and its own token, never the server's secrets."""
    path = job.script_path or ""
    state_path = f"{path}/user" if path else ""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(job_dir),
        "TMPDIR": str(job_dir),
        "LANG": "C.UTF-8",
        "HEADRACE_TOKEN": token,
        "HEADRACE_API_URL": api_url,
        "HEADRACE_WORKSPACE": job.workspace_id,
        "HEADRACE_JOB_ID": str(job.id),
        "HEADRACE_JOB_PATH": path,
        # Windmill's names, so that scripts using wmill / windmill-client run unchanged.
        "WM_TOKEN": token,
        "WM_WORKSPACE": job.workspace_id,
        "WM_JOB_ID": str(job.id),
        "WM_JOB_PATH": path,
        "BASE_INTERNAL_URL": api_url,
        "WM_BASE_URL": api_url,
    }
    if state_path:
        env["WM_STATE_PATH"] = env["WM_STATE_PATH_NEW"] = state_path
    return env
