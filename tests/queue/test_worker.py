"""The Worker against the real PostgreSQL, running real bash and python jobs."""
from __future__ import annotations

import asyncio
import os

from headrace.core import worker as worker_module
from headrace.core.languages import Language, LanguageCatalog
from headrace.core.queue import Outcome

from queue_helpers import error_of, wait_completed, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _pid_from_logs(queue, job_id) -> int:
    async def pid():
        for line in (await queue.logs(job_id)).splitlines():
            if line.startswith("pid="):
                return int(line[4:])
    return await wait_for(pid, what="the job to print its pid")


async def test_idle_worker_is_woken_by_notify(scripts, queue, pool, start_worker, monkeypatch):
    # With a one-minute poll, only the NOTIFY of the enqueue can wake an idle worker in time.
    monkeypatch.setattr(worker_module, "IDLE_POLL_S", 60.0)
    first = await scripts.job('echo first')
    await queue.enqueue(first)
    start_worker(slots=2)
    await wait_completed(pool, first.id)  # the worker has claimed, drained the queue and is idle

    second = await scripts.job('echo second')
    await queue.enqueue(second)
    row = await wait_completed(pool, second.id, timeout=20)
    assert (row["success"], row["result"]) == (True, "second")


async def test_worker_listens_again_after_losing_its_notify_connection(
    scripts, queue, pool, start_worker, monkeypatch
):
    monkeypatch.setattr(worker_module, "IDLE_POLL_S", 60.0)
    first = await scripts.job('echo first')
    await queue.enqueue(first)
    worker = start_worker()
    await wait_completed(pool, first.id)
    old_pid = worker._listener.get_server_pid()
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", old_pid)

    async def listening_again():
        conn = worker._listener
        return conn is not None and not conn.is_closed() and conn.get_server_pid() != old_pid
    await wait_for(listening_again, what="a new LISTEN connection")
    second = await scripts.job('echo second')
    await queue.enqueue(second)
    assert (await wait_completed(pool, second.id, timeout=20))["result"] == "second"


async def test_slots_run_jobs_concurrently(scripts, queue, pool, start_worker):
    jobs = [await scripts.job(f'sleep 0.6\necho {i}') for i in range(3)]
    await queue.enqueue_many(jobs)
    worker = start_worker(slots=3)
    rows = [await wait_completed(pool, j.id) for j in jobs]
    assert sorted(r["result"] for r in rows) == [0, 1, 2]
    assert {r["worker"] for r in rows} == {worker.name}
    # Every job started before any of them ended: they overlapped.
    assert max(r["started_at"] for r in rows) < min(r["completed_at"] for r in rows)


async def test_slots_limit_how_many_jobs_run_at_once(scripts, queue, pool, start_worker):
    jobs = [await scripts.job(f'sleep 0.3\necho {i}') for i in range(2)]
    await queue.enqueue_many(jobs)
    start_worker(slots=1)
    a, b = sorted([await wait_completed(pool, j.id) for j in jobs], key=lambda r: r["started_at"])
    assert a["completed_at"] <= b["started_at"]  # one slot: strictly one after the other


async def test_heartbeat_advances_while_a_job_runs(scripts, queue, pool, start_worker, settings):
    settings.heartbeat_s = 0.1
    job = await scripts.job('echo pid=$$\nsleep 1.2\necho done')
    await queue.enqueue(job)
    start_worker()
    await _pid_from_logs(queue, job.id)
    first = await pool.fetchval("SELECT last_ping FROM queue WHERE id = $1", job.id)

    async def pinged_again():
        ping = await pool.fetchval("SELECT last_ping FROM queue WHERE id = $1", job.id)
        return ping is not None and ping > first
    await wait_for(pinged_again, what="a later heartbeat")
    assert (await wait_completed(pool, job.id))["result"] == "done"


async def test_canceling_a_running_job_kills_its_process_group(scripts, queue, pool, start_worker):
    # The child `sleep` shares the job's process group: it must die too.
    job = await scripts.job('sleep 30 &\necho pid=$!\nwait')
    await queue.enqueue(job)
    start_worker()
    child = await _pid_from_logs(queue, job.id)
    assert _alive(child)
    assert await queue.cancel("main", job.id, "stop now") == "signaled"
    row = await wait_completed(pool, job.id)
    assert (row["success"], row["status"]) == (False, "canceled")
    assert error_of(row)["name"] == "Canceled" and "stop now" in error_of(row)["message"]
    await wait_for(lambda: _async(not _alive(child)), what="the job's child to die")


async def _async(value):
    return value


async def test_a_canceled_waiting_job_never_runs(scripts, queue, pool, start_worker, tmp_path):
    marker = tmp_path / "ran"
    job = await scripts.job(f'touch {marker}')
    await queue.enqueue(job)
    assert await queue.cancel("main", job.id, "changed my mind") == "completed"
    follow = await scripts.job('echo after')
    await queue.enqueue(follow)
    start_worker()
    assert (await wait_completed(pool, follow.id))["result"] == "after"
    assert not marker.exists()
    assert (await wait_completed(pool, job.id))["status"] == "canceled"


async def test_timeout_kills_the_job_and_fails_it(scripts, queue, pool, start_worker):
    job = await scripts.job(
        'import os, time\n\ndef main():\n    print(f"pid={os.getpid()}", flush=True)\n    time.sleep(30)\n',
        language="python3", timeout_s=1,
    )
    await queue.enqueue(job)
    start_worker()
    pid = await _pid_from_logs(queue, job.id)
    row = await wait_completed(pool, job.id)
    assert (row["success"], row["status"]) == (False, "failure")
    assert error_of(row)["name"] == "Timeout" and "1 s" in error_of(row)["message"]
    assert not _alive(pid)


async def test_a_job_failing_twice_then_succeeding_is_retried(scripts, queue, pool, start_worker, tmp_path):
    counter = tmp_path / "attempts"
    job = await scripts.job(
        f'n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))\necho $n > {counter}\n'
        f'if [ $n -lt 3 ]; then echo "attempt $n fails" >&2; exit 1; fi\necho "{{\\"attempt\\": $n}}"',
        max_retries=4, retry_delay_ms=50,
    )
    await queue.enqueue(job)
    start_worker()
    row = await wait_completed(pool, job.id)
    assert (row["success"], row["result"], row["attempts"]) == (True, {"attempt": 3}, 3)
    assert counter.read_text().strip() == "3"
    logs = await queue.logs(job.id)
    assert "attempt 1 fails" in logs and "attempt 2 fails" in logs


async def test_retries_run_out_and_the_last_failure_is_recorded(scripts, queue, pool, start_worker):
    job = await scripts.job('echo "broken" >&2\nexit 3', max_retries=1, retry_delay_ms=20)
    await queue.enqueue(job)
    start_worker()
    row = await wait_completed(pool, job.id)
    assert (row["success"], row["attempts"]) == (False, 2)
    assert error_of(row)["name"] == "ExitCode" and "code 3" in error_of(row)["message"]
    assert "broken" in error_of(row)["message"]


async def test_logs_stream_in_chunks_while_the_job_runs(scripts, queue, pool, start_worker):
    job = await scripts.job(
        'import time\n\ndef main():\n'
        '    for i in range(3):\n        print(f"line {i}", flush=True)\n        time.sleep(0.3)\n'
        '    return {"lines": 3, "ok": True, "values": [1.5, None, "x"]}\n',
        language="python3",
    )
    await queue.enqueue(job)
    start_worker()

    async def first_line_while_running():
        running = await pool.fetchval("SELECT running FROM queue WHERE id = $1", job.id)
        return running and "line 0" in await queue.logs(job.id)
    await wait_for(first_line_while_running, what="the first line while the job runs")
    row = await wait_completed(pool, job.id)
    assert row["result"] == {"lines": 3, "ok": True, "values": [1.5, None, "x"]}
    assert (await queue.logs(job.id)).count("line ") == 3
    assert await pool.fetchval("SELECT count(*) FROM job_logs WHERE job_id = $1", job.id) >= 3


async def test_a_requeued_job_is_abandoned_by_its_old_worker(scripts, queue, pool, start_worker, settings):
    settings.heartbeat_s = 0.1
    job = await scripts.job('echo pid=$$\nsleep 30')
    await queue.enqueue(job)
    worker = start_worker()
    pid = await _pid_from_logs(queue, job.id)
    # Another process took the job over (as after a missed heartbeat): the fence moved on.
    await pool.execute("UPDATE queue SET running = false WHERE id = $1", job.id)
    [taken] = await queue.claim("other-worker", ["default"], 1)
    await wait_for(lambda: _async(not _alive(pid)), what="the old attempt to be killed")
    await wait_for(lambda: _async(job.id not in worker.running), what="the old worker to let go")
    assert await pool.fetchval("SELECT count(*) FROM completed_jobs") == 0
    assert await queue.complete_many([(job.id, taken.fence, Outcome(True, "new owner"))]) == {job.id}


async def test_unknown_language_and_missing_script_fail_the_job(queue, pool, start_worker):
    from headrace.core.queue import NewJob

    odd = NewJob(workspace_id="main", language="cobol", args={})
    missing = NewJob(workspace_id="main", language="bash", args={}, script_hash="nope")
    await queue.enqueue_many([odd, missing])
    start_worker()
    row = await wait_completed(pool, odd.id)
    assert error_of(row)["name"] == "UnknownLanguage" and "cobol" in error_of(row)["message"]
    row = await wait_completed(pool, missing.id)
    assert error_of(row)["name"] == "ScriptNotFound" and "nope" in error_of(row)["message"]


class _Echo(Language):
    """In process: answers at once, or after awaiting when asked to (exercising the resumed path)."""

    id = "echo"
    isolated = False

    async def run(self, ctx):
        if ctx.args.get("wait"):
            await asyncio.sleep(ctx.args["wait"])
        if ctx.args.get("fail"):
            raise RuntimeError(ctx.args["fail"])
        return Outcome(True, ctx.args.get("value"))


async def test_in_process_jobs_finish_inline_or_after_waiting(queue, pool, start_worker, settings):
    from headrace.core.queue import NewJob

    jobs = [NewJob(workspace_id="main", language="echo", args=a) for a in (
        {"value": 1}, {"value": 2, "wait": 0.05}, {"fail": "boom"}, {"wait": 30}, {"wait": 0.01, "fail": "late"},
    )]
    jobs[3].timeout_s = 1
    await queue.enqueue_many(jobs)
    start_worker(slots=10, catalog=LanguageCatalog([_Echo()]))
    rows = [await wait_completed(pool, j.id) for j in jobs]
    assert [r["result"] for r in rows[:2]] == [1, 2]
    assert error_of(rows[2])["name"] == "RuntimeError" and error_of(rows[2])["message"] == "boom"
    assert error_of(rows[3])["name"] == "Timeout"
    assert error_of(rows[4])["message"] == "late"
    assert {r["attempts"] for r in rows} == {1}


async def test_worker_shutdown_kills_running_jobs_and_hands_them_back(
    scripts, queue, pool, start_worker
):
    job = await scripts.job('echo pid=$$\nsleep 30')
    await queue.enqueue(job)
    worker = start_worker()
    pid = await _pid_from_logs(queue, job.id)
    worker.task.cancel()
    await asyncio.gather(worker.task, return_exceptions=True)
    assert not _alive(pid)
    row = await pool.fetchrow("SELECT running, worker FROM queue WHERE id = $1", job.id)
    assert not row["running"] and row["worker"] is None  # back in the queue, no zombie timeout needed
    assert await pool.fetchval("SELECT count(*) FROM completed_jobs") == 0
