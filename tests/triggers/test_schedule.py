"""Schedules: tick computation across DST, and the `schedule` kind on a real server and PostgreSQL."""
from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestClient, TestServer

from headrace.core.db import Database
from headrace.core.ledger import EventSink
from headrace.core.trigger_store import row_to_trigger
from headrace.plugins.triggers.schedule.cron import CronError, CronSchedule
from headrace.plugins.triggers.schedule.kind import ScheduleRunner, iso

from schedule_support import Sql, create_trigger, eventually

UTC = timezone.utc
BERLIN = "Europe/Berlin"
# 2026 in Europe/Berlin: clocks go forward 29 March 02:00 CET -> 03:00 CEST (01:00 UTC),
# and back 25 October 03:00 CEST -> 02:00 CET (01:00 UTC).
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
FALL = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


def local(schedule: CronSchedule, ticks):
    return [schedule.local(t).strftime("%m-%d %H:%M:%S%z") for t in ticks]


# -- tick computation -----------------------------------------------------------------------------

def test_wall_clock_tick_in_spring_gap_fires_once_shifted_by_the_gap():
    s = CronSchedule("0 30 2 * * *", BERLIN)
    ticks = s.ticks(SPRING - timedelta(days=1), 3)
    # 02:30 does not exist on 29 March: it fires at 03:30 CEST; the days before and after are normal.
    assert local(s, ticks) == ["03-28 02:30:00+0100", "03-29 03:30:00+0200", "03-30 02:30:00+0200"]


def test_wall_clock_ticks_colliding_in_the_gap_are_one_tick():
    s = CronSchedule("0 0,30 2,3 * * *", BERLIN)
    ticks = s.ticks(SPRING - timedelta(hours=2), 4)
    # 02:00 -> 03:00 and 02:30 -> 03:30 coincide with the real 03:00 and 03:30: two ticks that night.
    assert local(s, ticks) == ["03-29 03:00:00+0200", "03-29 03:30:00+0200",
                               "03-30 02:00:00+0200", "03-30 02:30:00+0200"]


def test_wall_clock_tick_in_repeated_hour_fires_once():
    s = CronSchedule("0 */20 2 * * *", BERLIN)
    ticks = s.ticks(FALL - timedelta(hours=3), 4)
    # 02:00-02:59 happens twice on 25 October; each wall time fires once, in the first pass (CEST).
    assert local(s, ticks) == ["10-25 02:00:00+0200", "10-25 02:20:00+0200", "10-25 02:40:00+0200",
                               "10-26 02:00:00+0100"]


def test_every_second_in_the_repeated_hour_fires_3600_times():
    s = CronSchedule("* * 2 * * *", BERLIN)
    ticks = s.ticks(FALL - timedelta(hours=3), 3601)
    assert len(set(ticks)) == 3601
    assert all(s.local(t).utcoffset() == timedelta(hours=2) for t in ticks[:3600])
    assert s.local(ticks[3600]).date().day == 26  # the second pass is skipped


@pytest.mark.parametrize("around", [SPRING, FALL], ids=["spring", "fall"])
@pytest.mark.parametrize("expr,step", [("0 */15 * * * *", 900), ("0 0 * * * *", 3600), ("* * * * * *", 1)])
def test_interval_schedules_keep_elapsed_time_regular_across_dst(around, expr, step):
    s = CronSchedule(expr, BERLIN)
    ticks = s.ticks(around - timedelta(hours=2), int(4 * 3600 / step) if step > 1 else 200)
    gaps = {(b - a).total_seconds() for a, b in zip(ticks, ticks[1:])}
    assert gaps == {step}  # nothing lost, nothing doubled, even across the change


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Tokyo"]


def _transitions(tz_name: str, year: int) -> list[datetime]:
    from zoneinfo import ZoneInfo

    tz, out = ZoneInfo(tz_name), []
    t = datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        nxt = t + timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            out.append(nxt)
        t = nxt
    return out


@pytest.mark.parametrize("zone", ZONES)
def test_a_daily_wall_clock_schedule_fires_once_every_local_day_all_year(zone):
    s = CronSchedule("0 30 2 * * *", zone)  # 02:30 is inside the gap or the repeat in most of these zones
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = s.ticks(start - timedelta(days=1), 400)
    days = [s.local(t).date() for t in ticks if s.local(t).year == 2026]
    assert len(days) == len(set(days)) == 365


@pytest.mark.parametrize("zone", [z for z in ZONES if z != "Australia/Lord_Howe"])  # its clocks move 30 min
def test_an_hourly_interval_schedule_is_one_hour_apart_across_every_change(zone):
    s = CronSchedule("0 0 * * * *", zone)
    for change in _transitions(zone, 2026):
        ticks = s.ticks(change - timedelta(hours=5), 10)
        assert {(b - a) for a, b in zip(ticks, ticks[1:])} == {timedelta(hours=1)}, change


def test_seconds_field_and_time_zone():
    s = CronSchedule("15 0 9 * * 1", "America/New_York")  # Mondays 09:00:15 New York time
    t = s.next_after(datetime(2026, 7, 1, tzinfo=UTC))
    assert s.local(t).strftime("%a %H:%M:%S") == "Mon 09:00:15"
    assert t == datetime(2026, 7, 6, 13, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize("expr,tz,field", [
    ("* * * * *", "UTC", "cron"), ("61 * * * * *", "UTC", "cron"), ("0 0 0 30 2 *", "UTC", "cron"),
    ("* * * * * *", "Mars/Olympus", "timezone"),
])
def test_bad_cron_or_time_zone_names_the_field(expr, tz, field):
    with pytest.raises(CronError) as info:
        CronSchedule(expr, tz)
    assert info.value.field == field


def test_catch_up_window_is_counted_without_walking_every_tick():
    s = CronSchedule("* * * * * *", "UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    recent, older, _ = s.ticks_between(start, start + timedelta(days=1), 3)
    assert recent == [start + timedelta(days=1, seconds=-2), start + timedelta(days=1, seconds=-1),
                      start + timedelta(days=1)]
    assert older + len(recent) == pytest.approx(86400, abs=5)


# -- the schedule kind on a running server ------------------------------------------------------------

FAST = "* * * * * *"


async def schedule(api, path: str, script: str, **config) -> dict:
    body = {"path": path, "script_path": script, "config": {"cron": FAST, **config}}
    for key in ("mode", "error_handler_path", "error_handler_args"):
        if key in config:
            body[key] = body["config"].pop(key)
    return await create_trigger(api, "schedule", body)


async def test_bad_config_is_refused_naming_the_field(api):
    await api.create_script("f/s/noop", "def main():\n    return 1\n")
    for config, field in [({"cron": "* * *"}, "config.cron"), ({"cron": FAST, "timezone": "Nowhere/X"},
                                                                  "config.timezone"),
                          ({"cron": FAST, "overlap": "sometimes"}, "config.overlap"),
                          ({"cron": FAST, "paused_until": "tomorrow"}, "config.paused_until"),
                          ({}, "config.cron")]:
        r = await api.post("triggers/schedule/create", {"path": "f/s/bad", "script_path": "f/s/noop",
                                                         "config": config})
        assert r.status == 400, (config, await r.text())
        assert (await r.json())["error"]["field"] == field


async def test_every_second_schedule_runs_its_args_once_per_tick(api, db_url):
    await api.create_script("f/s/echo", "def main(x: int):\n    return x * 2\n")
    t = await schedule(api, "f/s/every", "f/s/echo", args={"x": 21})
    async with Sql(db_url) as sql:
        jobs = await eventually(lambda: _at_least(sql.jobs_of(uuid.UUID(t["id"])), 2))
        assert all(j["success"] and j["result"] == 42 for j in jobs)
        events = await sql.events(uuid.UUID(t["id"]))
    ticks = [datetime.fromisoformat(e["payload"]["scheduled_for"].replace("Z", "+00:00")) for e in events]
    assert [e["dedup_key"] for e in events] == [f"tick:{iso(x)}" for x in ticks]
    assert all((b - a) == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:]))  # consecutive, no gap
    assert all(e["payload"]["trigger_path"] == "f/s/every" for e in events)


async def _at_least(rows_coro, n):
    rows = await rows_coro
    return rows if len(rows) >= n else None


async def test_two_servers_make_exactly_one_job_per_tick(api, db_url, settings, server):
    """A second full server (API, supervisor, worker) on the same database: still one job a tick."""
    from dataclasses import replace

    from headrace.hub.app import SUPERVISOR, make_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    second = TestClient(TestServer(make_app(replace(settings, port=port)), host="127.0.0.1", port=port))
    await second.start_server()
    try:
        await api.create_script("f/s/noop", "def main():\n    return 1\n")
        t = await schedule(api, "f/s/two", "f/s/noop")
        tid = uuid.UUID(t["id"])
        async with Sql(db_url) as sql:
            await eventually(lambda: _at_least(sql.jobs_of(tid), 3))
            owner = await sql.fetchval("SELECT lease_owner FROM triggers WHERE id = $1", tid)
            events = await sql.events(tid)
            jobs = await sql.fetch("SELECT id FROM queue WHERE script_path = 'f/s/noop' UNION ALL "
                                   "SELECT id FROM completed_jobs WHERE script_path = 'f/s/noop'")
    finally:
        await second.close()
    assert owner in {server.app[SUPERVISOR].owner, second.app[SUPERVISOR].owner}
    keys = [e["dedup_key"] for e in events]
    assert len(keys) == len(set(keys))
    ticks = [datetime.fromisoformat(e["payload"]["scheduled_for"].replace("Z", "+00:00")) for e in events]
    assert all((b - a) == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:]))
    assert sorted(str(e["job_id"]) for e in events) == sorted(str(j["id"]) for j in jobs)


async def test_two_runners_at_once_still_make_one_job_per_tick(api, db_url):
    """Two runners of one schedule at the same moment (a lease handover): each tick is taken once."""
    await api.create_script("f/s/noop", "def main():\n    return 1\n")
    t = await schedule(api, "f/s/twice", "f/s/noop", mode="disabled")  # the server's runner stays off
    dbs = [await Database.open(db_url) for _ in range(2)]
    sinks = [EventSink(db.pool) for db in dbs]
    for sink in sinks:
        sink.start()
    try:
        row = await dbs[0].pool.fetchrow("SELECT * FROM triggers WHERE id = $1", uuid.UUID(t["id"]))
        trigger = row_to_trigger(row)
        trigger.mode = "enabled"
        runners = [asyncio.create_task(ScheduleRunner(trigger, sink).run()) for sink in sinks]
        async with Sql(db_url) as sql:
            await eventually(lambda: _at_least(sql.events(trigger.id), 3))
            for r in runners:
                r.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            events = await sql.events(trigger.id)
            jobs = await sql.fetch("SELECT id FROM queue WHERE script_path = 'f/s/noop' UNION ALL "
                                   "SELECT id FROM completed_jobs WHERE script_path = 'f/s/noop'")
    finally:
        for sink, db in zip(sinks, dbs):
            await sink.close()
            await db.close()
    keys = [e["dedup_key"] for e in events]
    assert len(keys) == len(set(keys)) >= 3
    assert sorted(str(e["job_id"]) for e in events) == sorted(str(j["id"]) for j in jobs)


async def _set_last_tick(sql: Sql, trigger_id, when: datetime) -> None:
    await sql.execute("UPDATE triggers SET state = $2::jsonb WHERE id = $1", trigger_id,
                      {"last_tick": iso(when)})


@pytest.mark.parametrize("policy,expect_run", [("none", 0), ("latest", 1), ("all", 4)])
async def test_catch_up_after_downtime(api, db_url, policy, expect_run):
    await api.create_script("f/s/noop", "def main():\n    return 1\n")
    t = await schedule(api, "f/s/cu", "f/s/noop", mode="disabled", catch_up=policy, catch_up_max=4,
                       missed_after_s=1)
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        down_since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=12)
        await _set_last_tick(sql, tid, down_since)
        r = await api.post("triggers/schedule/setmode/f/s/cu", {"mode": "enabled"})
        assert r.status == 200
        # Wait until the server has caught up and fired at least one on-time tick after that.
        await eventually(lambda: _at_least(sql.fetch(
            "SELECT 1 FROM events WHERE trigger_id = $1 AND NOT payload ? 'catch_up' AND status = 'queued'",
            tid), 1))
        events = await sql.events(tid)
    missed = [e for e in events if e["payload"].get("catch_up") or e["status"] == "skipped"]
    ran = [e for e in missed if e["status"] == "queued"]
    skipped = [e for e in missed if e["status"] == "skipped"]
    assert len(ran) == expect_run
    assert all(e["payload"]["skip_reason"] == "missed" for e in skipped)
    # Every tick since the downtime began is in the ledger exactly once: run or skipped, the latest run.
    ticks = sorted(e["payload"]["scheduled_for"] for e in events)
    first = iso(down_since + timedelta(seconds=1))
    assert ticks[0] == first and len(ticks) == len(set(ticks))
    assert [iso(down_since + timedelta(seconds=i + 1)) for i in range(len(ticks))] == ticks
    assert sorted(e["payload"]["scheduled_for"] for e in ran) == ticks[len(skipped):len(skipped) + len(ran)]
    r = await api.get("schedules/skipped/f/s/cu")
    listed = await r.json()
    assert r.status == 200 and len(listed) == len(skipped)
    assert {x["reason"] for x in listed} <= {"missed"}
    if skipped:  # a skipped tick can still be run by hand, through the ledger's replay
        r = await api.post(f"events/replay/{skipped[0]['id']}")
        assert r.status == 201, await r.text()
        assert (await api.wait_job((await r.json())["job_id"]))["success"]


async def test_a_long_downtime_is_summarised_in_one_row(api, db_url):
    await api.create_script("f/s/noop", "def main():\n    return 1\n")
    t = await schedule(api, "f/s/long", "f/s/noop", mode="disabled", catch_up="none")
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        await _set_last_tick(sql, tid, datetime.now(UTC) - timedelta(days=1))
        await api.post("triggers/schedule/setmode/f/s/long", {"mode": "enabled"})
        await eventually(lambda: _at_least(sql.fetch(
            "SELECT 1 FROM events WHERE trigger_id = $1 AND status = 'queued'", tid), 1))
        skipped = await sql.fetch("SELECT * FROM events WHERE trigger_id = $1 AND status = 'skipped'", tid)
    summary = [e for e in skipped if "count" in e["payload"]]
    assert len(summary) == 1 and len(skipped) == 101  # 100 recorded one by one, the rest counted
    assert summary[0]["payload"]["count"] + 100 == pytest.approx(86400 - 30, abs=10)


async def test_overlap_skip_records_skipped_ticks_and_never_runs_two_at_once(api, db_url):
    await api.create_script("f/s/slow", "import time\ndef main():\n    time.sleep(1.2)\n    return 1\n")
    t = await schedule(api, "f/s/skip", "f/s/slow", overlap="skip")
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        await eventually(lambda: _at_least(sql.jobs_of(tid), 2))
        await eventually(lambda: _at_least(sql.fetch(
            "SELECT 1 FROM events WHERE trigger_id = $1 AND status = 'skipped'", tid), 1))
        events = await sql.events(tid)
        skipped = [e for e in events if e["status"] == "skipped"]
        job_ids = {e["job_id"] for e in events if e["job_id"]}
        assert all(e["payload"]["skip_reason"] == "overlap" for e in skipped)
        assert all(uuid.UUID(e["payload"]["running_job"]) in job_ids for e in skipped)
        await api.post("triggers/schedule/setmode/f/s/skip", {"mode": "disabled"})
        await eventually(lambda: _none_left(sql, tid))
        jobs = await sql.jobs_of(tid)
    _assert_sequential(jobs)
    r = await api.get("schedules/skipped/f/s/skip")
    assert {x["reason"] for x in await r.json()} == {"overlap"}


async def _none_left(sql, tid):
    left = await sql.fetchval(
        "SELECT count(*) FROM queue q JOIN events e ON e.job_id = q.id WHERE e.trigger_id = $1", tid)
    return left == 0


def _assert_sequential(jobs):
    spans = sorted((j["started_at"], j["completed_at"]) for j in jobs)
    assert len(spans) >= 2
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two jobs of the schedule ran at once"


async def test_overlap_queue_holds_each_tick_until_the_previous_job_is_done(api, db_url):
    await api.create_script("f/s/slow", "import time\ndef main():\n    time.sleep(1.1)\n    return 1\n")
    t = await schedule(api, "f/s/q", "f/s/slow", overlap="queue")
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        await eventually(lambda: _at_least(sql.jobs_of(tid), 2))
        r = await api.post("triggers/schedule/setmode/f/s/q", {"mode": "disabled"})
        assert r.status == 200
        # Disabling cancels the ticks still held; the running one finishes.
        await eventually(lambda: _none_left(sql, tid), timeout=20)
        events = await sql.events(tid)
        jobs = await sql.fetch(
            """SELECT c.*, e.received_at FROM completed_jobs c JOIN events e ON e.job_id = c.id
               WHERE e.trigger_id = $1 ORDER BY e.dedup_key""", tid)
    assert all(e["status"] == "queued" for e in events)  # queued, never skipped
    assert len(jobs) == len(events)
    ran = [j for j in jobs if j["status"] != "canceled"]
    _assert_sequential(ran)
    # A tick that came while the previous job ran was enqueued then, and started only after it ended.
    waited = [b for a, b in zip(ran, ran[1:]) if b["received_at"] < a["completed_at"] <= b["started_at"]]
    assert waited
    assert all(j["status"] == "canceled" for j in jobs[len(ran):])


async def test_overlap_allow_runs_concurrently(api, db_url):
    await api.create_script("f/s/slow", "import time\ndef main():\n    time.sleep(1.2)\n    return 1\n")
    t = await schedule(api, "f/s/allow", "f/s/slow", overlap="allow")
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        await eventually(lambda: _at_least(sql.jobs_of(tid), 2))
        await api.post("triggers/schedule/setmode/f/s/allow", {"mode": "disabled"})
        jobs = await sql.jobs_of(tid)
    spans = sorted((j["started_at"], j["completed_at"]) for j in jobs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


async def test_pause_until_a_time(api, db_url):
    await api.create_script("f/s/noop", "def main():\n    return 1\n")
    t = await schedule(api, "f/s/p", "f/s/noop")
    tid = uuid.UUID(t["id"])
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    r = await api.post("schedules/pause/f/s/p", {"until": iso(until)})
    assert r.status == 200, await r.text()
    assert (await r.json())["config"]["paused_until"] == iso(until)
    paused_at = datetime.now(UTC)
    r = await api.get("schedules/preview/f/s/p?n=2")
    body = await r.json()
    assert [x["utc"] for x in body["ticks"]] == [iso(until), iso(until + timedelta(seconds=1))]
    async with Sql(db_url) as sql:
        await eventually(lambda: _at_least(sql.fetch(
            "SELECT 1 FROM events WHERE trigger_id = $1 AND payload->>'scheduled_for' >= $2", tid, iso(until)),
            1))
        events = await sql.events(tid)
    during = [e["payload"]["scheduled_for"] for e in events
              if iso(paused_at + timedelta(seconds=1)) < e["payload"]["scheduled_for"] < iso(until)]
    assert during == []
    r = await api.post("schedules/pause/f/s/p", {"until": "soon"})
    assert r.status == 400 and (await r.json())["error"]["field"] == "until"


async def test_preview_endpoint(api):
    r = await api.get("schedules/preview", params={"cron": "0 30 2 * * *", "timezone": BERLIN, "n": "3"})
    assert r.status == 200, await r.text()
    body = await r.json()
    expected = CronSchedule("0 30 2 * * *", BERLIN).ticks(datetime.now(UTC), 3)
    assert [x["utc"] for x in body["ticks"]] == [iso(x) for x in expected]
    assert all(x["local"][11:19] in ("02:30:00", "03:30:00") for x in body["ticks"])  # 03:30: spring gap
    for params, field in [({"cron": "* *"}, "cron"), ({"cron": FAST, "timezone": "X/Y"}, "timezone"),
                          ({"cron": FAST, "n": "0"}, "n"), ({"cron": FAST, "n": "many"}, "n"), ({}, "cron")]:
        r = await api.get("schedules/preview", params=params)
        assert r.status == 400, params
        assert (await r.json())["error"]["field"] == field
    r = await api.get("schedules/preview/f/none/here")
    assert r.status == 404


async def test_lease_handover_to_another_server_loses_and_doubles_no_tick(api, db_url, server):
    """The server running a schedule stops; another takes the lease and carries on from the saved tick."""
    from headrace.core.supervisor import Supervisor
    from headrace.core.triggers import TriggerKindCatalog
    from headrace.hub.app import SUPERVISOR
    from headrace.plugins.triggers.schedule import ScheduleKind

    await api.create_script("f/s/noop", "def main():\n    return 1\n")
    t = await schedule(api, "f/s/handover", "f/s/noop")
    tid = uuid.UUID(t["id"])
    db = await Database.open(db_url)
    sink = EventSink(db.pool)
    sink.start()
    other = Supervisor(db.pool, TriggerKindCatalog([ScheduleKind()]), sink, lease_s=2.0, scan_s=0.2)
    try:
        async with Sql(db_url) as sql:
            await eventually(lambda: _at_least(sql.events(tid), 2))
            first_owner = await sql.fetchval("SELECT lease_owner FROM triggers WHERE id = $1", tid)
            task = asyncio.create_task(other.run())
            await server.close()  # the first server shuts down and gives its lease up
            await eventually(lambda: _owned_by(sql, tid, other.owner))
            n = len(await sql.events(tid))
            await eventually(lambda: _at_least(sql.events(tid), n + 2))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            events = await sql.events(tid)
    finally:
        await sink.close()
        await db.close()
    assert first_owner == server.app[SUPERVISOR].owner
    ticks = [datetime.fromisoformat(e["payload"]["scheduled_for"].replace("Z", "+00:00")) for e in events]
    assert all((b - a) == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:]))  # none lost
    assert len({e["dedup_key"] for e in events}) == len(events)  # none doubled
    assert all(e["status"] == "queued" for e in events)


async def _owned_by(sql: Sql, tid, owner: str) -> bool:
    return await sql.fetchval("SELECT lease_owner FROM triggers WHERE id = $1", tid) == owner
