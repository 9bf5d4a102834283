"""Queue throughput: enqueue N no-op jobs in bulk, drain them with ONE Worker, print jobs/s.

    python -m bench.queue [-n 20000] [--slots 1000] [--max-seconds 120] [--ceiling]

It creates its own database on the PostgreSQL at HEADRACE_BENCH_PG (default
postgresql://postgres@127.0.0.1:5432/postgres) and drops it afterwards. The jobs use the bench-only
in-process "noop" language (bench/noop_plugin.py), so the figure is the queue's own: batched claim,
per-job bookkeeping and batched, durable completion (the server's synchronous_commit is left as is).
With --ceiling it first drains the same jobs with the bare queue calls (claim a batch, complete it),
a reference for what the Worker's machinery costs. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headrace.core.config import Settings
from headrace.core.db import make_engine, make_pool
from headrace.core.languages import LanguageCatalog
from headrace.core.migrate import migrate
from headrace.core.plugins import build_registry
from headrace.core.queue import JobQueue, NewJob, Outcome
from headrace.core.worker import Worker

ADMIN_PG = os.environ.get("HEADRACE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ENQUEUE_CHUNK = 5000


def _db_url(name: str) -> str:
    return f"{ADMIN_PG.rpartition('/')[0]}/{name}"


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_PG)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _enqueue(queue: JobQueue, n: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, ENQUEUE_CHUNK):
        await queue.enqueue_many(
            [NewJob(workspace_id="main", language="noop", args={}) for _ in range(min(ENQUEUE_CHUNK, n - start))]
        )
    return time.perf_counter() - t0


async def _count(pool: asyncpg.Pool) -> tuple[int, int]:
    queued = await pool.fetchval("SELECT count(*) FROM queue")
    completed = await pool.fetchval("SELECT count(*) FROM completed_jobs")
    return queued, completed


async def _drain_bare(queue: JobQueue, batch: int, deadline: float) -> int:
    """The ceiling: claim a batch, complete it, nothing else."""
    done = 0
    ok = Outcome(True, None)
    while time.monotonic() < deadline:
        jobs = await queue.claim("bare", ("default",), batch)
        if not jobs:
            break
        done += len(await queue.complete_many([(j.id, j.fence, ok) for j in jobs]))
    return done


async def _drain_worker(pool, url: str, n: int, slots: int, deadline: float) -> int:
    languages = LanguageCatalog.from_registry(build_registry(load_entry_points=False, extra=("bench.noop_plugin",)))
    worker = Worker(pool, languages, Settings(database_url=url), slots=slots, dsn=url)
    task = asyncio.create_task(worker.run())
    try:
        while worker.completed_count < n and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return worker.completed_count


async def bench(n: int, slots: int, max_seconds: float, ceiling: bool) -> dict:
    name = f"hr_bench_queue_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = _db_url(name)
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        engine = make_engine(url)
        await migrate(engine)
        await engine.dispose()
        pool = await make_pool(url, min_size=2, max_size=8)
        try:
            queue = JobQueue(pool)
            report: dict = {"jobs": n, "slots": slots}
            deadline = time.monotonic() + max_seconds
            if ceiling:
                await _enqueue(queue, n)
                t0 = time.perf_counter()
                done = await _drain_bare(queue, 500, deadline)
                report["bare_claim_complete_jobs_per_s"] = round(done / (time.perf_counter() - t0))
                await pool.execute("TRUNCATE completed_jobs")
            enqueue_s = await _enqueue(queue, n)
            report["enqueue_jobs_per_s"] = round(n / enqueue_s)
            t0 = time.perf_counter()
            done = await _drain_worker(pool, url, n, slots, deadline)
            drain_s = time.perf_counter() - t0
            queued, completed = await _count(pool)
            report.update(
                drained=done, completed_rows=completed, left_in_queue=queued,
                drain_s=round(drain_s, 3), worker_jobs_per_s=round(done / drain_s),
            )
            if ceiling:
                report["worker_vs_bare"] = round(report["worker_jobs_per_s"] / report["bare_claim_complete_jobs_per_s"], 2)
            return report
        finally:
            await pool.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20000, help="jobs to enqueue and drain")
    p.add_argument("--slots", type=int, default=1000, help="the worker's concurrent slots")
    p.add_argument("--max-seconds", type=float, default=120.0, help="give up draining after this long")
    p.add_argument("--ceiling", action="store_true", help="also drain with bare claim/complete calls")
    a = p.parse_args()
    report = asyncio.run(bench(a.n, a.slots, a.max_seconds, a.ceiling))
    print(json.dumps(report))
    if report["drained"] != a.n or report["completed_rows"] != a.n:
        sys.exit("not every job was completed exactly once")


if __name__ == "__main__":
    main()
