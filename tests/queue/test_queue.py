"""The queue's SQL on the real PostgreSQL: enqueue, batched SKIP LOCKED claim, heartbeat, cancel,
retry with backoff, fencing, zombie sweep, completion, logs."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg

from headrace.core import queue_sql as sql
from headrace.core.queue import ZOMBIE_RESTARTS, NewJob, Outcome


def _job(**kw) -> NewJob:
    return NewJob(workspace_id="main", language="bash", args=kw.pop("args", {"n": 1}), **kw)


async def test_enqueue_then_claim_returns_the_job_with_its_fields(queue, pool):
    job = _job(args={"name": "x", "nested": [1, {"a": None}]}, priority=3, max_retries=2, timeout_s=9)
    await queue.enqueue(job)
    row = await pool.fetchrow("SELECT running, attempts, fence FROM queue WHERE id = $1", job.id)
    assert (row["running"], row["attempts"], row["fence"]) == (False, 0, 0)

    [claimed] = await queue.claim("w1", ["default"], 10)
    assert claimed.id == job.id
    assert claimed.args == {"name": "x", "nested": [1, {"a": None}]}
    assert (claimed.fence, claimed.attempts, claimed.max_retries, claimed.timeout_s) == (1, 1, 2, 9)
    assert (claimed.language, claimed.workspace_id, claimed.canceled) == ("bash", "main", False)
    row = await pool.fetchrow("SELECT running, worker, started_at FROM queue WHERE id = $1", job.id)
    assert row["running"] and row["worker"] == "w1" and row["started_at"] is not None


async def test_claim_batches_up_to_the_limit_and_respects_tag_priority_and_schedule(queue):
    jobs = [_job() for _ in range(7)]
    await queue.enqueue_many(jobs)
    urgent = _job(priority=10)
    other_tag = _job(tag="gpu")
    later = _job(scheduled_for=(await queue.pool.fetchval("SELECT now() + interval '1 hour'")))
    for j in (urgent, other_tag, later):
        await queue.enqueue(j)

    first = await queue.claim("w", ["default"], 5)
    assert len(first) == 5
    assert first[0].id == urgent.id  # highest priority first
    second = await queue.claim("w", ["default"], 5)
    assert len(second) == 3
    assert await queue.claim("w", ["default"], 5) == []  # `later` is not due, `gpu` is another tag
    claimed = {j.id for j in first + second}
    assert claimed == {j.id for j in jobs} | {urgent.id}
    [gpu] = await queue.claim("w", ["gpu"], 5)
    assert gpu.id == other_tag.id


async def test_a_claim_skips_rows_locked_by_a_concurrent_claim(queue, db_url):
    """Claimer A holds its batch in an open transaction; claimer B neither blocks nor gets those rows."""
    await queue.enqueue_many([_job() for _ in range(6)])
    a = await asyncpg.connect(db_url)
    b = await asyncpg.connect(db_url)
    try:
        tx = a.transaction()
        await tx.start()
        got_a = await a.fetch(sql.CLAIM, "A", ["default"], 4)
        got_b = await asyncio.wait_for(b.fetch(sql.CLAIM, "B", ["default"], 4), 5)
        await tx.commit()
    finally:
        await a.close()
        await b.close()
    ids_a, ids_b = {r["id"] for r in got_a}, {r["id"] for r in got_b}
    assert (len(ids_a), len(ids_b)) == (4, 2)
    assert not ids_a & ids_b


async def test_concurrent_claimers_never_get_the_same_job(queue, pool):
    jobs = [_job() for _ in range(300)]
    await queue.enqueue_many(jobs)

    async def claimer(name: str) -> list[uuid.UUID]:
        got = []
        while batch := await queue.claim(name, ["default"], 7):
            got += [j.id for j in batch]
        return got

    results = await asyncio.gather(*(claimer(f"c{i}") for i in range(5)))
    everything = [i for r in results for i in r]
    assert len(everything) == len(set(everything)) == 300
    assert set(everything) == {j.id for j in jobs}
    assert sum(1 for r in results if r) >= 2  # the claims really were interleaved
    owners = await pool.fetch("SELECT id, worker FROM queue")
    by_id = {r["id"]: r["worker"] for r in owners}
    for name, got in zip((f"c{i}" for i in range(5)), results):
        assert all(by_id[i] == name for i in got)


async def test_enqueue_notifies_workers_of_the_tag(queue, db_url):
    got: asyncio.Queue = asyncio.Queue()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.add_listener(sql.CHANNEL_JOBS, lambda *a: got.put_nowait(a[3]))
        await queue.enqueue(_job(tag="reports"))
        assert await asyncio.wait_for(got.get(), 5) == "reports"
        await queue.enqueue_many([_job(tag="a"), _job(tag="a"), _job(tag="b")])
        payloads = {await asyncio.wait_for(got.get(), 5) for _ in range(2)}
        assert payloads == {"a", "b"}  # one notification per distinct tag
    finally:
        await conn.close()


async def test_heartbeat_advances_last_ping_and_returns_the_cancel_flag(queue, pool):
    job = _job()
    await queue.enqueue(job)
    [claimed] = await queue.claim("w1", ["default"], 1)
    await pool.execute("UPDATE queue SET last_ping = last_ping - interval '10 seconds' WHERE id = $1", job.id)
    before = await pool.fetchval("SELECT last_ping FROM queue WHERE id = $1", job.id)

    owned = await queue.heartbeat("w1", [job.id])
    after = await pool.fetchval("SELECT last_ping FROM queue WHERE id = $1", job.id)
    assert after > before
    assert owned[job.id]["fence"] == claimed.fence and owned[job.id]["canceled"] is False

    assert await queue.heartbeat("someone-else", [job.id]) == {}  # only the owner pings
    assert await queue.cancel("main", job.id, "stop it") == "signaled"
    owned = await queue.heartbeat("w1", [job.id])
    assert owned[job.id]["canceled"] is True and owned[job.id]["canceled_reason"] == "stop it"


async def test_cancel_of_a_waiting_job_completes_it_as_canceled(queue, pool):
    job = _job(notify_done=True)
    await queue.enqueue(job)
    assert await queue.cancel("main", job.id, "no longer needed") == "completed"
    assert await pool.fetchval("SELECT count(*) FROM queue WHERE id = $1", job.id) == 0
    row = await pool.fetchrow("SELECT * FROM completed_jobs WHERE id = $1", job.id)
    assert (row["success"], row["status"]) == (False, "canceled")
    assert row["result"]["error"]["name"] == "Canceled"
    assert "no longer needed" in row["result"]["error"]["message"]
    assert await queue.claim("w", ["default"], 10) == []


async def test_cancel_of_unknown_or_other_workspace_job_is_none(queue):
    job = _job()
    await queue.enqueue(job)
    assert await queue.cancel("main", uuid.uuid4(), "x") is None
    assert await queue.cancel("elsewhere", job.id, "x") is None


async def test_retry_backs_off_exponentially_and_counts_attempts(queue, pool):
    job = _job(max_retries=3, retry_delay_ms=1000)
    await queue.enqueue(job)
    delays = []
    for attempt in (1, 2, 3):
        await pool.execute("UPDATE queue SET scheduled_for = now() WHERE id = $1", job.id)  # due now
        [claimed] = await queue.claim("w", ["default"], 1)
        assert claimed.attempts == attempt
        before = await pool.fetchval("SELECT now()")
        delays.append(await queue.retry(claimed.id, claimed.fence))
        row = await pool.fetchrow("SELECT running, scheduled_for, attempts FROM queue WHERE id = $1", job.id)
        assert not row["running"] and row["attempts"] == attempt
        assert row["scheduled_for"] > before  # moved forward
        assert await queue.claim("w", ["default"], 1) == []  # not due yet
    # retry_delay_ms * 2^(attempts-1): 1 s, 2 s, 4 s
    assert [round(d) for d in delays] == [1, 2, 4]


async def test_a_stale_fence_cannot_complete_or_retry_a_requeued_job(queue, pool):
    job = _job(max_retries=1)
    await queue.enqueue(job)
    [first] = await queue.claim("dead-worker", ["default"], 1)
    # The worker stops pinging; the sweep requeues the job and another worker claims it.
    await pool.execute("UPDATE queue SET last_ping = now() - interval '1 hour' WHERE id = $1", job.id)
    requeued, failed = await queue.sweep_zombies(30)
    assert (requeued, failed) == ([job.id], [])
    [second] = await queue.claim("live-worker", ["default"], 1)
    assert second.fence == first.fence + 1 and second.attempts == 2

    assert await queue.complete_many([(job.id, first.fence, Outcome(True, "stale"))]) == set()
    assert await queue.retry(job.id, first.fence) is None
    assert await pool.fetchval("SELECT count(*) FROM completed_jobs") == 0
    assert await pool.fetchval("SELECT worker FROM queue WHERE id = $1", job.id) == "live-worker"

    assert await queue.complete_many([(job.id, second.fence, Outcome(True, {"ok": 1}))]) == {job.id}
    assert await queue.complete_many([(job.id, second.fence, Outcome(True, "again"))]) == set()
    rows = await pool.fetch("SELECT result, worker, attempts FROM completed_jobs WHERE id = $1", job.id)
    assert [(r["result"], r["worker"], r["attempts"]) for r in rows] == [({"ok": 1}, "live-worker", 2)]


async def test_sweep_leaves_fresh_jobs_and_fails_jobs_out_of_restarts(queue, pool):
    fresh, lost = _job(), _job(max_retries=0, notify_done=True)
    await queue.enqueue_many([fresh, lost])
    await queue.claim("w", ["default"], 2)
    await pool.execute(
        "UPDATE queue SET last_ping = now() - interval '1 hour', attempts = $2 WHERE id = $1",
        lost.id, ZOMBIE_RESTARTS + 1,
    )
    requeued, failed = await queue.sweep_zombies(30)
    assert (requeued, failed) == ([], [lost.id])
    row = await pool.fetchrow("SELECT * FROM completed_jobs WHERE id = $1", lost.id)
    assert (row["success"], row["status"], row["result"]["error"]["name"]) == (False, "failure", "WorkerLost")
    assert await pool.fetchval("SELECT running FROM queue WHERE id = $1", fresh.id) is True


async def test_complete_many_moves_jobs_with_json_results_and_notifies(queue, pool, db_url):
    waiting, quiet = _job(notify_done=True), _job()
    await queue.enqueue_many([waiting, quiet])
    claimed = {j.id: j for j in await queue.claim("w", ["default"], 2)}
    await pool.execute(
        sql.INSERT_JOB_TOKEN, "h" * 64, "hr_x", "main", "admin", ["jobs:run"], waiting.id, 60.0
    )
    done_ids: asyncio.Queue = asyncio.Queue()
    conn = await asyncpg.connect(db_url)
    await conn.add_listener(sql.CHANNEL_DONE, lambda *a: done_ids.put_nowait(a[3]))
    try:
        result = {"list": [1, 2.5, "three", None, True], "nested": {"k": "v"}}
        done = await queue.complete_many([
            (waiting.id, claimed[waiting.id].fence, Outcome(True, result)),
            (quiet.id, claimed[quiet.id].fence, Outcome.failure("ValueError", "bad", "Traceback ...")),
        ])
        assert done == {waiting.id, quiet.id}
        assert await asyncio.wait_for(done_ids.get(), 5) == str(waiting.id)
    finally:
        await conn.close()
    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM completed_jobs")}
    assert rows[waiting.id]["result"] == result and rows[waiting.id]["status"] == "success"
    assert rows[quiet.id]["result"] == {"error": {"name": "ValueError", "message": "bad", "stack": "Traceback ..."}}
    assert (rows[quiet.id]["success"], rows[quiet.id]["status"]) == (False, "failure")
    assert await pool.fetchval("SELECT count(*) FROM queue") == 0
    assert await pool.fetchval("SELECT count(*) FROM tokens WHERE job_id = $1", waiting.id) == 0  # token died
    assert done_ids.empty()  # only the job someone waits for is announced


async def test_logs_are_appended_in_chunks_and_read_back_in_order(queue, pool):
    a, b = uuid.uuid4(), uuid.uuid4()
    await queue.append_logs([(a, "one\n"), (b, "other\n"), (a, "two")])
    await queue.append_logs([(a, " three\n")])
    assert await queue.logs(a) == "one\ntwo three\n"
    assert await queue.logs(b) == "other\n"
    assert await queue.logs(uuid.uuid4()) == ""
    assert await pool.fetchval("SELECT count(*) FROM job_logs WHERE job_id = $1", a) == 3


async def test_get_finds_queued_then_completed(queue):
    job = _job()
    await queue.enqueue(job)
    kind, row = await queue.get("main", job.id)
    assert kind == "queued" and row["running"] is False
    [claimed] = await queue.claim("w", ["default"], 1)
    await queue.complete_many([(job.id, claimed.fence, Outcome(True, 7))])
    kind, row = await queue.get("main", job.id)
    assert (kind, row["result"], row["success"]) == ("completed", 7, True)
    assert await queue.get("other", job.id) is None
