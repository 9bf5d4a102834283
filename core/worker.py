"""The worker loop: claim jobs in batches, run them in N slots, heartbeat, complete in batches.

One asyncio task per running process job; an in-process job (Language.isolated False) runs its first
step inline and gets a task only if it has to wait. Background tasks per worker: the listener
(LISTEN connection, reopened when it drops), the claimer (woken by NOTIFY), the heartbeat (which also
delivers cancel flags and lost leases), the completer (which flushes logs, then completes every
finished job in one statement), the log flusher and the zombie sweep.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import traceback
import types
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from . import queue_sql as sql
from .config import Settings
from .languages import JobContext, LanguageCatalog
from .log_masking import SecretMasker
from .process import kill_group
from .queue import ClaimedJob, JobQueue, Outcome
from .secrets import SecretBox
from .tokens import JOB_SCOPES, TOKEN_PREFIX, hash_token, new_token

log = logging.getLogger(__name__)

CLAIM_BATCH = 500
IDLE_POLL_S = 1.0  # also picks up jobs whose scheduled_for has come
LOG_FLUSH_S = 0.1
# A job without its own timeout still has its token expire this long after it starts.
DEFAULT_TOKEN_TTL_S = 24 * 3600
SHUTDOWN_COMPLETE_S = 5.0


@dataclass(slots=True, eq=False)
class _Running:
    job: ClaimedJob
    ctx: JobContext
    task: asyncio.Task | None = None  # None for an in-process job that finished in its first step
    stop_reason: Outcome | None = None  # set when the job is canceled, timed out or lost
    lost: bool = False
    finishing: bool = False  # outcome handed to the completer: no more cancels
    outcome: Outcome | None = None


@types.coroutine
def _resume(coro, pending):
    """Continue a coroutine whose first step already ran (and yielded ``pending``) as an awaitable.

    In-process languages usually finish in their first step; those that do not are handed to a task
    through this, so that a task is created only for the jobs that need one.
    """
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            step = functools.partial(coro.throw, exc)
        else:
            step = functools.partial(coro.send, value)
        try:
            pending = step()
        except StopIteration as stop:
            return stop.value


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
        secrets: SecretBox | None = None,
    ):
        self.queue = JobQueue(pool)
        # Masks secret values printed by jobs (None: logs are stored as printed).
        self.masker = SecretMasker(secrets) if secrets is not None else None
        self.pool = pool
        self.languages = languages
        self.settings = settings
        self.slots = slots or settings.worker_slots
        self.tags = tags
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.dsn = dsn
        # Jobs this worker holds: running, or finished and waiting for the completer. A slot is
        # free again only once the job's completion is committed.
        self.running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._draining = asyncio.Event()
        self._finished: list[_Running] = []
        self._finished_ready = asyncio.Event()
        self._logs: list[tuple[uuid.UUID, str]] = []
        self._scripts: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], str | None] = {}  # each version's pinned dependencies
        self._side_tasks: set[asyncio.Task] = set()
        self._listener: asyncpg.Connection | None = None
        self._listener_lost = asyncio.Event()
        self.jobs_dir = Path(tempfile.mkdtemp(prefix="headrace-jobs-"))
        self.completed_count = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until cancelled; then stop claiming, kill running jobs and complete what finished."""
        if self.dsn is not None:
            # Listen before the first claim, so that no enqueue falls between the two.
            self._listener = await self._listen()
        tasks = [
            asyncio.create_task(self._listen_loop(), name="listen"),
            asyncio.create_task(self._claim_loop(), name="claim"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._complete_loop(), name="complete"),
            asyncio.create_task(self._log_loop(), name="logs"),
            asyncio.create_task(self._sweep_loop(), name="sweep"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._abandon_running()
            if self._listener is not None:
                await self._listener.close()
            shutil.rmtree(self.jobs_dir, ignore_errors=True)

    async def _listen(self) -> asyncpg.Connection:
        from .db import connect

        conn = await connect(self.dsn)
        try:
            await conn.add_listener(sql.CHANNEL_JOBS, self._on_jobs)
            await conn.add_listener(sql.CHANNEL_CANCEL, self._on_cancel)
        except BaseException:
            conn.terminate()
            raise
        self._listener_lost.clear()
        conn.add_termination_listener(lambda _conn: self._listener_lost.set())
        return conn

    async def _listen_loop(self) -> None:
        """Reopen the LISTEN connection when it drops; until then the idle poll and heartbeat cover."""
        if self.dsn is None:
            return
        while True:
            await self._listener_lost.wait()
            log.warning("lost the NOTIFY connection; reconnecting")
            self._listener = None
            while self._listener is None:
                try:
                    self._listener = await self._listen()
                except Exception as exc:
                    log.warning("cannot listen for notifications yet: %s", exc)
                    await asyncio.sleep(IDLE_POLL_S)
            self._wake.set()  # catch up on jobs enqueued while nobody listened

    def _on_jobs(self, conn, pid, channel, payload) -> None:
        if payload in self.tags:
            self._wake.set()

    def _on_cancel(self, conn, pid, channel, payload) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        if job_id in self.running:
            # The flag itself is read from the row by the heartbeat; ping now.
            self._side_task(self._heartbeat_once())

    def _side_task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- claiming and running -------------------------------------------------------------

    async def drain(self, grace_s: float) -> bool:
        """Stop claiming and give running jobs up to ``grace_s`` to finish; True if they all did.

        Cancel ``run()`` afterwards: jobs still running then are killed and requeued at once.
        """
        self._draining.set()
        self._wake.set()
        self._slot_free.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.running and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not self.running

    async def _claim_loop(self) -> None:
        while True:
            if self._draining.is_set():
                await asyncio.Future()  # claim nothing more; run() is cancelled by whoever drains
            free = self.slots - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            limit = min(free, CLAIM_BATCH)
            try:
                jobs = await self.queue.claim(self.name, self.tags, limit)
            except Exception as exc:  # database away: keep trying
                log.warning("claim failed: %s", exc)
                await asyncio.sleep(IDLE_POLL_S)
                continue
            for job in jobs:
                self._start(job)
            if len(jobs) < limit:  # the queue is drained: idle until NOTIFY (or the poll)
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
        language = None if job.canceled else self.languages.resolve(job.language)
        if language is not None and not language.isolated:
            key = (job.workspace_id, job.script_hash)
            if job.script_hash is None or key in self._scripts:
                ctx.content = self._scripts.get(key, "")
                self._start_in_process(entry, language.run(ctx))
                return
        entry.task = asyncio.create_task(self._run_job(entry))

    def _start_in_process(self, entry: _Running, coro) -> None:
        """Run an in-process job's first step now; only a job that has to wait gets a task.

        That first step runs outside any task (asyncio.current_task() is None there); everything after
        its first await runs in the job's task.
        """
        try:
            pending = coro.send(None)
        except StopIteration as stop:
            self._finish(entry, stop.value)
            return
        except Exception as exc:
            self._finish(entry, Outcome.failure(type(exc).__name__, str(exc), traceback.format_exc()))
            return
        run = asyncio.ensure_future(_resume(coro, pending))
        entry.task = asyncio.create_task(self._run_job(entry, run))

    async def _run_job(self, entry: _Running, run: asyncio.Future | None = None) -> None:
        job = entry.job
        try:
            if job.canceled:
                outcome = _canceled(job.canceled_reason)
            else:
                outcome = await self._attempt(entry, run)
        except asyncio.CancelledError:
            # Stopped before its process started: finish it if it was canceled or timed out.
            if entry.lost or entry.stop_reason is None:
                self._drop(entry)
                raise
            outcome = entry.stop_reason
        except Exception:  # never lose a job to a worker bug: record it as failed
            log.exception("job %s crashed the worker loop", job.id)
            outcome = Outcome.failure("WorkerError", traceback.format_exc())
        if entry.stop_reason is not None:
            outcome = entry.stop_reason
        if entry.lost:  # another worker owns it now
            self._drop(entry)
        else:
            self._finish(entry, outcome)

    async def _attempt(self, entry: _Running, run: asyncio.Future | None) -> Outcome:
        job, ctx = entry.job, entry.ctx
        if run is None:
            language = self.languages.resolve(job.language)
            if language is None:
                return Outcome.failure(
                    "UnknownLanguage",
                    f"no plugin provides language {job.language!r}; available: {', '.join(self.languages.names())}",
                )
            if job.script_hash is not None:
                try:
                    ctx.content = await self._script_content(job.workspace_id, job.script_hash)
                except LookupError as exc:
                    return Outcome.failure("ScriptNotFound", str(exc))
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
            # cancel, lost lease or worker shutdown: whoever cancelled set stop_reason / lost
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
            row = await self.pool.fetchrow(sql.GET_SCRIPT_CONTENT, workspace_id, script_hash)
            content = row["content"] if row else None
            self._locks[key] = row["lock"] if row else None
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
        ctx.lock = self._locks.get((job.workspace_id, job.script_hash or ""))
        ctx.cache_dir = self.settings.job_cache_dir

    # -- finishing ------------------------------------------------------------------------

    def _finish(self, entry: _Running, outcome: Outcome) -> None:
        """Hand the outcome to the completer; the slot stays taken until the completion commits."""
        entry.finishing = True
        entry.outcome = outcome
        self._remove_job_dir(entry)
        self._finished.append(entry)
        self._finished_ready.set()

    def _drop(self, entry: _Running) -> None:
        """Forget a job this worker no longer owns (lost lease or shutdown)."""
        self._remove_job_dir(entry)
        if self.running.get(entry.job.id) is entry:
            del self.running[entry.job.id]
            self._slot_free.set()

    @staticmethod
    def _remove_job_dir(entry: _Running) -> None:
        if entry.ctx.job_dir is not None:
            shutil.rmtree(entry.ctx.job_dir, ignore_errors=True)

    async def _complete_loop(self) -> None:
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            if not await self._complete_finished():
                self._finished_ready.set()
                await asyncio.sleep(0.5)

    async def _complete_finished(self) -> bool:
        """Flush logs, then complete (or retry) every finished job in one go; False if that failed."""
        batch, self._finished = self._finished, []
        if not batch:
            return True
        try:
            await self._flush_logs()
            await self._complete(batch)
        except asyncpg.DataError as exc:
            # One outcome the database refuses must not hold back the rest: complete one by one,
            # and fail the job whose result cannot be stored.
            log.error("a batch of %d completions was refused (%s); completing one by one", len(batch), exc)
            for entry in batch:
                try:
                    await self._complete([entry])
                except asyncpg.DataError as one:
                    entry.outcome = Outcome.failure("ResultNotStorable", f"the job's result could not be stored: {one}")
                    try:
                        await self._complete([entry])
                    except Exception:
                        self._finished.append(entry)
                except Exception:
                    self._finished.append(entry)
            batch = [e for e in batch if e not in self._finished]
            if self._finished:  # those that could not be completed now are retried on the next pass
                self._finished_ready.set()
        except Exception as exc:
            log.error("completing %d jobs failed, will retry: %s", len(batch), exc)
            self._finished = batch + self._finished
            return False
        for entry in batch:
            # The job may have been retried and claimed again by now: only free this attempt.
            if self.running.get(entry.job.id) is entry:
                del self.running[entry.job.id]
        self._slot_free.set()
        return True

    async def _complete(self, batch: list[_Running]) -> None:
        to_complete = []
        for entry in batch:
            job, outcome = entry.job, entry.outcome
            if outcome.status == "failure" and job.attempts <= job.max_retries:
                delay = await self.queue.retry(job.id, job.fence)
                if delay is not None:
                    # Nobody NOTIFYs a retry: wake up when it is due.
                    asyncio.get_running_loop().call_later(max(delay, 0.0), self._wake.set)
                    continue
            to_complete.append((job.id, job.fence, outcome))
        done = await self.queue.complete_many(to_complete)
        self.completed_count += len(done)

    async def _flush_logs(self) -> None:
        if self._logs:
            chunks, self._logs = self._logs, []
            if self.masker is not None:
                chunks = await self.masker.mask(chunks, self._workspace_of)
            await self.queue.append_logs(chunks)

    def _workspace_of(self, job_id: uuid.UUID) -> str | None:
        entry = self.running.get(job_id)
        return entry.job.workspace_id if entry is not None else None

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
        entries = list(self.running.values())
        if not entries:
            return
        owned = await self.queue.heartbeat(self.name, [e.job.id for e in entries])
        for entry in entries:
            if entry.stop_reason is not None or entry.finishing or entry.task is None or entry.task.done():
                continue
            row = owned.get(entry.job.id)
            if row is None or row["fence"] != entry.job.fence:
                if self.running.get(entry.job.id) is entry:
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
        """On shutdown: kill running jobs and requeue their rows, complete finished ones."""
        for task in self._side_tasks:
            task.cancel()
        running = [e for e in self.running.values() if e.task is not None and not e.finishing]
        for entry in running:
            entry.lost = True
            entry.task.cancel()
        await asyncio.gather(*(e.task for e in running), return_exceptions=True)
        if running:
            # Back to the queue now rather than after the zombie timeout; the fence keeps this safe.
            try:
                await self.queue.requeue(self.name, [(e.job.id, e.job.fence) for e in running])
            except Exception as exc:
                log.warning("could not requeue %d abandoned jobs (the zombie sweep will): %s", len(running), exc)
        try:
            await asyncio.wait_for(self._complete_finished(), SHUTDOWN_COMPLETE_S)
        except (asyncio.TimeoutError, Exception) as exc:
            log.warning("could not complete finished jobs at shutdown: %s", exc)


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
