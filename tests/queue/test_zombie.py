"""Real `headrace worker` processes: N slots, and a SIGKILLed worker's job rerun exactly once."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import pytest

from headrace.core.queue import Outcome
from queue_helpers import wait_completed, wait_for


class WorkerProcess:
    """`python -m headrace.hub.cli worker` in a subprocess, with the name it announces."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str):
        self.proc = proc
        self.name = name


@pytest.fixture
async def worker_process(db_url):
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str, heartbeat_s: float = 0.2, zombie_after_s: float = 1.0,
                    shutdown_grace_s: float = 1.0) -> WorkerProcess:
        env = {
            **os.environ, "DATABASE_URL": db_url, "HEADRACE_HEARTBEAT_S": str(heartbeat_s),
            "HEADRACE_ZOMBIE_AFTER_S": str(zombie_after_s), "HEADRACE_SHUTDOWN_GRACE_S": str(shutdown_grace_s),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "headrace.hub.cli", "worker", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(proc)
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        m = re.match(r"worker (\S+): (\d+) slots", line)
        assert m, f"unexpected first line from `headrace worker`: {line!r}"
        return WorkerProcess(proc, m.group(1))

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def test_headrace_worker_runs_n_jobs_at_once(scripts, queue, pool, worker_process):
    jobs = [await scripts.job(f"sleep 0.5\necho {i}") for i in range(3)]
    await queue.enqueue_many(jobs)
    worker = await worker_process("--slots", "3")
    rows = [await wait_completed(pool, j.id, timeout=30) for j in jobs]
    assert sorted(r["result"] for r in rows) == [0, 1, 2]
    assert {r["worker"] for r in rows} == {worker.name}
    assert max(r["started_at"] for r in rows) < min(r["completed_at"] for r in rows)


async def test_a_sigkilled_workers_job_is_rerun_and_completes_exactly_once(
    scripts, queue, pool, worker_process, tmp_path
):
    starts = tmp_path / "starts"
    job = await scripts.job(f"echo start >> {starts}\nsleep 1\necho finished")
    await queue.enqueue(job)
    doomed = await worker_process("--slots", "2")

    async def running_on_doomed():
        row = await pool.fetchrow("SELECT running, worker, fence FROM queue WHERE id = $1", job.id)
        return row is not None and row["running"] and row["worker"] == doomed.name and starts.exists() and row
    first = await wait_for(running_on_doomed, timeout=20, what="the first worker to run the job")
    doomed.proc.kill()  # SIGKILL: no chance to clean up or complete anything
    await doomed.proc.wait()

    rescuer = await worker_process("--slots", "2")
    row = await wait_completed(pool, job.id, timeout=30)
    assert (row["success"], row["result"], row["worker"]) == (True, "finished", rescuer.name)
    assert row["attempts"] == 2
    assert starts.read_text().splitlines() == ["start", "start"]
    assert await pool.fetchval("SELECT count(*) FROM completed_jobs WHERE id = $1", job.id) == 1
    assert await pool.fetchval("SELECT count(*) FROM queue") == 0
    # The dead worker's claim can never complete the job now.
    assert await queue.complete_many([(job.id, first["fence"], Outcome(True, "stale"))]) == set()
    assert await pool.fetchval("SELECT count(*) FROM completed_jobs WHERE id = $1", job.id) == 1


async def test_sigterm_lets_the_running_job_finish_and_claims_nothing_more(scripts, queue, pool, worker_process):
    running = await scripts.job("sleep 1\necho finished")
    await queue.enqueue(running)
    worker = await worker_process("--slots", "2", shutdown_grace_s=20)
    await wait_for(lambda: pool.fetchval("SELECT running FROM queue WHERE id = $1", running.id), what="job start")
    worker.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)  # the worker is draining now: a new job must stay in the queue
    later = await scripts.job("echo later")
    await queue.enqueue(later)
    assert await asyncio.wait_for(worker.proc.wait(), 30) == 0
    row = await wait_completed(pool, running.id)
    assert (row["success"], row["result"], row["attempts"]) == (True, "finished", 1)
    waiting = await pool.fetchrow("SELECT running, worker FROM queue WHERE id = $1", later.id)
    assert dict(waiting) == {"running": False, "worker": None}


async def test_sigterm_past_the_grace_period_hands_the_job_back_at_once(scripts, queue, pool, worker_process):
    job = await scripts.job("sleep 30")
    await queue.enqueue(job)
    # A zombie timeout far longer than the test: only the worker's own hand-back can free the row.
    worker = await worker_process(zombie_after_s=600, shutdown_grace_s=0.3)
    await wait_for(lambda: pool.fetchval("SELECT running FROM queue WHERE id = $1", job.id), what="job start")
    worker.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.proc.wait(), 30) == 0
    row = await pool.fetchrow("SELECT running, worker, attempts, scheduled_for <= now() AS due FROM queue WHERE id = $1",
                              job.id)
    assert dict(row) == {"running": False, "worker": None, "attempts": 1, "due": True}
    # Another worker takes it up (attempt 2) and the old attempt can never complete it.
    assert await queue.complete_many([(job.id, 1, Outcome(True, "stale"))]) == set()

