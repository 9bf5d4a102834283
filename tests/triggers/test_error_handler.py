"""Error handlers: a trigger's handler script runs once per failed job, with the error and the event."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from headrace.core.db import Database
from headrace.core.error_handlers import ErrorHandlerRunner
from headrace.core.ledger import Event, EventSink

from schedule_support import Sql, create_trigger, eventually

FAIL = 'def main(**kw):\n    raise ValueError("boom: " + str(kw.get("n")))\n'
HANDLER = ("def main(error: dict, event: dict, job_id: str, trigger_path: str, channel: str = ''):\n"
           "    return {'error': error, 'event': event, 'job_id': job_id, 'trigger_path': trigger_path,"
           " 'channel': channel}\n")


async def handler_jobs(sql: Sql, trigger_id) -> list:
    return await sql.fetch(
        """SELECT e.dedup_key, e.payload, c.result, c.success FROM events e
           LEFT JOIN completed_jobs c ON c.id = e.job_id
           WHERE e.trigger_id = $1 AND e.kind = 'error_handler' ORDER BY e.received_at""", trigger_id)


async def _completed(sql, tid, n):
    rows = await handler_jobs(sql, tid)
    return rows if len(rows) >= n and all(r["success"] is not None for r in rows[:n]) else None


async def test_failed_scheduled_job_runs_the_handler_with_error_and_event(api, db_url):
    await api.create_script("f/e/fail", FAIL)
    await api.create_script("f/e/on_error", HANDLER)
    t = await create_trigger(api, "schedule", {
        "path": "f/e/tick", "script_path": "f/e/fail", "config": {"cron": "* * * * * *", "args": {"n": 7}},
        "error_handler_path": "f/e/on_error", "error_handler_args": {"channel": "#ops"}})
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        rows = await eventually(lambda: _completed(sql, tid, 2))
        await api.post("triggers/schedule/setmode/f/e/tick", {"mode": "disabled"})
        failed = {str(r["job_id"]): r for r in await sql.fetch(
            """SELECT e.job_id, e.payload FROM events e JOIN completed_jobs c ON c.id = e.job_id
               WHERE e.trigger_id = $1 AND e.kind = 'schedule' AND NOT c.success""", tid)}
    for row in rows[:2]:
        assert row["success"], row["result"]
        result = row["result"]
        assert row["dedup_key"] == f"error:{result['job_id']}"
        assert result["job_id"] in failed
        assert result["error"]["name"] == "ValueError" and "boom: 7" in result["error"]["message"]
        source = failed[result["job_id"]]["payload"]
        assert result["event"] == {"kind": "schedule", **source}
        assert result["event"]["scheduled_for"] and result["event"]["trigger_path"] == "f/e/tick"
        assert result["trigger_path"] == "f/e/tick" and result["channel"] == "#ops"
    keys = [r["dedup_key"] for r in rows]
    assert len(keys) == len(set(keys))  # one handler run per failed job


@pytest.fixture
async def own_runner(db_url):
    """A second ledger writer and error-handler runner on the same database (like another server)."""
    db = await Database.open(db_url)
    sink = EventSink(db.pool)
    sink.start()
    yield db, sink, ErrorHandlerRunner(db.pool, sink, dsn=db_url, sweep_s=0.1)
    await sink.close()
    await db.close()


async def _quiet_trigger(api, path: str, **extra) -> uuid.UUID:
    """A trigger with an error handler whose events the test makes itself (the schedule stays off)."""
    t = await create_trigger(api, "schedule", {
        "path": path, "script_path": "f/e/fail", "config": {"cron": "0 0 0 1 1 *"}, "mode": "disabled",
        "error_handler_path": "f/e/on_error", **extra})
    return uuid.UUID(t["id"])


async def _failing_job(sink: EventSink, tid: uuid.UUID, script="f/e/fail") -> str:
    """A job of the trigger that fails, enqueued without notify_done: only a sweep can notice it."""
    acc = await sink.accept(Event(workspace_id="main", source=f"trigger:{tid}", kind="test",
                                  script_path=script, payload={"n": 1}, args={"n": 1}, trigger_id=tid))
    return str(acc.job_id)


async def test_sweep_catches_failures_without_notice_and_runs_the_handler_once(api, db_url, own_runner):
    _, sink, runner = own_runner
    await api.create_script("f/e/fail", FAIL)
    await api.create_script("f/e/on_error", HANDLER)
    tid = await _quiet_trigger(api, "f/e/quiet")
    job_id = await _failing_job(sink, tid)
    async with runner.running(), Sql(db_url) as sql:  # this runner and the server's race for it
        rows = await eventually(lambda: _completed(sql, tid, 1))
        status = await api.wait_job(job_id)
        assert status["success"] is False
        # Both runners have swept since the failure; there is still only one handler run.
        before = datetime.now(timezone.utc) - timedelta(minutes=1)
        assert await runner.sweep(before) == 0
        rows = await handler_jobs(sql, tid)
    assert [r["dedup_key"] for r in rows] == [f"error:{job_id}"]
    assert rows[0]["result"]["event"] == {"kind": "test", "n": 1}


async def test_a_failing_handler_does_not_start_another_handler(api, db_url, own_runner):
    _, sink, runner = own_runner
    await api.create_script("f/e/fail", FAIL)
    await api.create_script("f/e/on_error", FAIL)  # the handler fails too
    tid = await _quiet_trigger(api, "f/e/chain")
    job_id = await _failing_job(sink, tid)
    await api.wait_job(job_id)
    async with Sql(db_url) as sql:
        rows = await eventually(lambda: _completed(sql, tid, 1))
        assert rows[0]["success"] is False
        assert await runner.sweep(datetime.now(timezone.utc) - timedelta(minutes=5)) == 0
        assert len(await handler_jobs(sql, tid)) == 1


async def test_a_handler_that_cannot_take_the_arguments_is_reported_on_the_trigger(api, db_url, own_runner):
    _, sink, runner = own_runner
    await api.create_script("f/e/fail", FAIL)
    await api.create_script("f/e/on_error", "def main(only_this: int):\n    return 1\n")
    tid = await _quiet_trigger(api, "f/e/badargs")
    job_id = await _failing_job(sink, tid)
    await api.wait_job(job_id)
    assert await runner.sweep(datetime.now(timezone.utc) - timedelta(minutes=5)) == 0
    r = await api.get("triggers/schedule/get/f/e/badargs")
    last_error = (await r.json())["last_error"]
    assert "f/e/on_error" in last_error and job_id in last_error


async def test_a_successful_job_runs_no_handler(api, db_url, own_runner):
    _, sink, runner = own_runner
    await api.create_script("f/e/fail", "def main(**kw):\n    return 'fine'\n")
    await api.create_script("f/e/on_error", HANDLER)
    tid = await _quiet_trigger(api, "f/e/ok")
    job_id = await _failing_job(sink, tid)
    assert (await api.wait_job(job_id))["success"] is True
    assert await runner.sweep(datetime.now(timezone.utc) - timedelta(minutes=5)) == 0
    async with Sql(db_url) as sql:
        assert await handler_jobs(sql, tid) == []


async def test_error_handler_path_must_be_a_script(api):
    await api.create_script("f/e/fail", FAIL)
    r = await api.post("triggers/schedule/create", {
        "path": "f/e/x", "script_path": "f/e/fail", "config": {"cron": "* * * * * *"},
        "error_handler_path": "f/e/missing"})
    assert r.status == 400 and (await r.json())["error"]["field"] == "error_handler_path"


async def test_failed_http_route_job_runs_the_handler(api, db_url, server, http_triggers, wait_route):
    await api.create_script("f/e/fail", FAIL)
    await api.create_script("f/e/on_error", HANDLER)
    status, t = await http_triggers.create({
        "path": "f/e/route", "script_path": "f/e/fail", "error_handler_path": "f/e/on_error",
        "config": {"route_path": "/fails/:n", "method": "POST"}})
    assert status == 201, t
    await wait_route(server, "POST", "/main/fails/3")
    r = await server.post("/api/r/main/fails/3", json={})
    assert r.status == 201, await r.text()
    async with Sql(db_url) as sql:
        rows = await eventually(lambda: _completed(sql, uuid.UUID(t["id"]), 1))
    result = rows[0]["result"]
    assert rows[0]["success"], result
    assert result["error"]["name"] == "ValueError" and "boom: 3" in result["error"]["message"]
    assert result["event"]["kind"] == "http" and result["event"]["params"] == {"n": "3"}
    assert result["trigger_path"] == "f/e/route"
