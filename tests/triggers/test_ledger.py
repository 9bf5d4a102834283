"""The event ledger through the API: captures, recent events, replay, suspended jobs, retention.

A tiny HTTP-family trigger kind, registered only here, hands requests to the EventSink with the
trigger's mode, as every real kind does.
"""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from headrace.core import tokens as tok
from headrace.core.config import Settings
from headrace.core.db import make_engine
from headrace.core.hookspecs import hookimpl
from headrace.core.ledger import Event
from headrace.core.plugins import build_registry
from headrace.core.retention import purge_events
from headrace.core.triggers import TriggerKind
from headrace.hub.http import json_response
from headrace.hub.http_triggers import ROUTES
from headrace.hub.keys import DB
from headrace.hub.request_args import args_from_request

ECHO = "def main(**kwargs):\n    return kwargs\n"
KIND = "ledgertest"


class LedgerTestKind(TriggerKind):
    id = KIND
    family = "http"
    summary = "test-only: POST /api/r/<workspace>/<config.route>"
    config_schema = {"type": "object", "required": ["route"], "properties": {"route": {"type": "string"}}}

    def route(self, trigger):
        return "POST", trigger.config["route"]

    async def handle(self, request, trigger, params, events):
        args, payload = await args_from_request(request, raw=False, headers=[])
        acc = await events.accept(Event(
            workspace_id=trigger.workspace_id, source=trigger.source, kind=self.id,
            script_path=trigger.script_path, payload=payload, args=args, mode=trigger.mode,
            trigger_id=trigger.id, dedup_key=request.headers.get("Idempotency-Key"),
        ))
        return json_response({"event_id": acc.event_id, "job_id": acc.job_id, "status": acc.status}, status=201)


class _Plugin:
    @hookimpl
    def headrace_trigger_kinds(self):
        return [LedgerTestKind()]


@pytest.fixture
async def server(settings):
    """The running server, with the test kind registered (overrides the shared fixture)."""
    from headrace.hub.app import make_app

    registry = build_registry(load_entry_points=False)
    registry.pm.register(_Plugin(), name="ledger-test-kind")
    client = TestClient(TestServer(make_app(settings, registry), host=settings.host, port=settings.port))
    await client.start_server()
    yield client
    await client.close()


async def _token(db_url: str, scopes: list[str], workspace: str = "main") -> str:
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            return await tok.create_token(conn, workspace, scopes=scopes)
    finally:
        await engine.dispose()


async def _served(api, path: str, mode: str) -> None:
    """Wait until this server's route table serves the trigger in ``mode`` (it reloads on NOTIFY)."""
    for _ in range(200):
        if any(e.trigger.path == path and e.trigger.mode == mode for e in api.client.app[ROUTES].entries):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"trigger {path} never served in mode {mode}")


async def _make_trigger(api, path: str, route: str, mode: str) -> dict:
    await api.create_script("u/admin/echo", ECHO)
    r = await api.post(f"triggers/{KIND}/create",
                       {"path": path, "script_path": "u/admin/echo", "config": {"route": route}, "mode": mode})
    assert r.status == 201, await r.text()
    await _served(api, path, mode)
    return await r.json()


async def _set_mode(api, path: str, mode: str) -> None:
    r = await api.post(f"triggers/{KIND}/setmode/{path}", {"mode": mode})
    assert r.status == 200, await r.text()
    await _served(api, path, mode)


async def _send(api, route: str, body: dict, **headers) -> dict:
    r = await api.client.post(f"/api/r/main/{route}", json=body, headers=headers)
    assert r.status == 201, await r.text()
    return await r.json()


async def _trigger_events(api, path: str, **params) -> list[dict]:
    r = await api.get(f"triggers/{KIND}/events/{path}", params=params)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_capture_records_events_without_jobs_and_replay_runs_one(api):
    await _make_trigger(api, "f/t/cap", "cap", "capture")
    first = await _send(api, "cap", {"n": 1})
    second = await _send(api, "cap", {"n": 2})
    assert first["status"] == second["status"] == "captured" and first["job_id"] is None
    events = await _trigger_events(api, "f/t/cap")
    assert [e["id"] for e in events] == [second["event_id"], first["event_id"]]  # newest first
    assert all(e["job_id"] is None and e["status"] == "captured" for e in events)
    assert events[1]["payload"]["body"] == {"n": 1} and events[1]["kind"] == KIND
    r = await api.get("jobs/list", params={"script_path_exact": "u/admin/echo"})
    assert await r.json() == []

    r = await api.post(f"events/replay/{first['event_id']}")
    assert r.status == 201, await r.text()
    replay = await r.json()
    assert replay["replay_of"] == first["event_id"]
    job = await api.wait_job(replay["job_id"])
    assert job["success"] and job["result"] == {"n": 1}
    r = await api.get(f"events/get/{replay['event_id']}")
    row = await r.json()
    assert row["replay_of"] == first["event_id"] and row["job_id"] == replay["job_id"]
    assert row["status"] == "queued"
    # The script's events: both captures and the replay, newest first.
    r = await api.get("events/list", params={"script_path": "u/admin/echo"})
    assert [e["id"] for e in await r.json()] == [replay["event_id"], second["event_id"], first["event_id"]]
    r = await api.get("events/list", params={"script_path": "u/admin/echo", "status": "captured", "limit": "1"})
    assert [e["id"] for e in await r.json()] == [second["event_id"]]


async def test_replay_of_a_webhook_rebuilds_its_args(api):
    await api.create_script("u/admin/echo", ECHO)
    r = await api.client.post(api.url("jobs/run/p/u/admin/echo"), data='{"a": 1}',
                              params={"raw": "true", "include_header": "X-Sig"},
                              headers={**api.headers, "Content-Type": "application/json", "X-Sig": "s1"})
    assert r.status == 201
    first = await api.wait_job(await r.text())
    event_id = r.headers["X-Headrace-Event-Id"]
    r = await api.post(f"events/replay/{event_id}")
    replay = await r.json()
    again = await api.wait_job(replay["job_id"])
    assert again["result"] == first["result"] == {"a": 1, "raw_string": '{"a": 1}', "x_sig": "s1"}
    assert replay["job_id"] != first["id"]


async def test_suspended_events_are_kept_and_resumed_in_bulk(api):
    await _make_trigger(api, "f/t/sus", "sus", "suspended")
    sent = [await _send(api, "sus", {"n": i}) for i in range(3)]
    assert {s["status"] for s in sent} == {"suspended"}
    for s in sent:
        r = await api.get(f"jobs_u/get/{s['job_id']}")
        job = await r.json()
        assert job["type"] == "QueuedJob" and not job["running"] and job["scheduled_for"].startswith("9999")
    r = await api.post(f"triggers/{KIND}/resume/f/t/sus")
    assert r.status == 200
    body = await r.json()
    assert body["resumed"] == 3 and sorted(body["job_ids"]) == sorted(s["job_id"] for s in sent)
    results = [(await api.wait_job(s["job_id"]))["result"] for s in sent]
    assert results == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {e["status"] for e in await _trigger_events(api, "f/t/sus")} == {"queued"}
    # Nothing left to resume.
    r = await api.post(f"triggers/{KIND}/resume/f/t/sus")
    assert (await r.json())["resumed"] == 0


async def test_suspended_events_can_be_cancelled_in_bulk(api):
    await _make_trigger(api, "f/t/sus", "sus", "enabled")
    ran = await _send(api, "sus", {"n": "ran"})
    await _set_mode(api, "f/t/sus", "suspended")
    kept = [await _send(api, "sus", {"n": i}) for i in range(2)]
    r = await api.post(f"triggers/{KIND}/cancel_suspended/f/t/sus", {"reason": "bad batch"})
    assert r.status == 200
    body = await r.json()
    assert body["canceled"] == 2 and sorted(body["job_ids"]) == sorted(k["job_id"] for k in kept)
    for k in kept:
        job = await api.wait_job(k["job_id"])
        assert job["status"] == "canceled" and "bad batch" in job["result"]["error"]["message"]
    assert (await api.wait_job(ran["job_id"]))["success"]
    statuses = {e["job_id"]: e["status"] for e in await _trigger_events(api, "f/t/sus")}
    assert statuses == {ran["job_id"]: "queued", kept[0]["job_id"]: "canceled", kept[1]["job_id"]: "canceled"}
    assert [e["job_id"] for e in await _trigger_events(api, "f/t/sus", status="canceled")] == \
        [kept[1]["job_id"], kept[0]["job_id"]]


async def test_dedup_key_per_trigger_returns_the_first_job(api):
    await _make_trigger(api, "f/t/dd", "dd", "enabled")
    a = await _send(api, "dd", {"n": 1}, **{"Idempotency-Key": "k1"})
    b = await _send(api, "dd", {"n": 2}, **{"Idempotency-Key": "k1"})
    assert a["job_id"] == b["job_id"] and a["event_id"] == b["event_id"]
    assert len(await _trigger_events(api, "f/t/dd")) == 1


async def test_retention_purges_old_rows_and_keeps_recent_and_suspended_ones(api, db_url):
    await _make_trigger(api, "f/t/ret", "ret", "capture")
    old = [await _send(api, "ret", {"n": i}) for i in range(3)]
    recent = await _send(api, "ret", {"n": "new"})
    await _set_mode(api, "f/t/ret", "suspended")
    waiting = await _send(api, "ret", {"n": "waiting"})
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE events SET received_at = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
                           [uuid.UUID(e["event_id"]) for e in old + [waiting]])
    finally:
        await conn.close()
    pool = api.client.app[DB].pool
    assert await purge_events(pool, 0) == 0  # 0 keeps everything
    assert await purge_events(pool, 30, batch=2) == 3  # several batches
    left = {e["id"] for e in await _trigger_events(api, "f/t/ret")}
    assert left == {recent["event_id"], waiting["event_id"]}
    assert await purge_events(pool, 30) == 0


def test_retention_setting_comes_from_the_environment():
    assert Settings.from_env({"HEADRACE_EVENT_RETENTION_DAYS": "7.5"}).event_retention_days == 7.5
    assert Settings.from_env({}).event_retention_days == Settings().event_retention_days > 0


async def test_event_routes_check_token_workspace_and_scope(api, db_url):
    await _make_trigger(api, "f/t/cap", "cap", "capture")
    sent = await _send(api, "cap", {"n": 1})
    routes = [
        ("GET", f"triggers/{KIND}/events/f/t/cap", "events:read"),
        ("GET", "events/list", "events:read"),
        ("GET", f"events/get/{sent['event_id']}", "events:read"),
        ("POST", f"events/replay/{sent['event_id']}", "events:write"),
        ("POST", f"triggers/{KIND}/resume/f/t/cap", "triggers:write"),
        ("POST", f"triggers/{KIND}/cancel_suspended/f/t/cap", "triggers:write"),
    ]
    wrong_scope = await _token(db_url, ["jobs:run", "triggers:read"])
    for method, tail, scope in routes:
        r = await api.client.request(method, api.url(tail))
        assert r.status == 401, (method, tail)
        r = await api.client.request(method, api.url(tail), headers={"Authorization": f"Bearer {wrong_scope}"})
        assert r.status == 403 and (await r.json())["error"]["scope"] == scope, (method, tail)
        r = await api.client.request(method, f"/api/w/elsewhere/{tail}", headers=api.headers)
        assert r.status == 403, (method, tail)
    allowed = await _token(db_url, ["events:read"])
    r = await api.client.get(api.url("events/list"), headers={"Authorization": f"Bearer {allowed}"})
    assert r.status == 200 and len(await r.json()) == 1


async def test_event_routes_refuse_bad_input_clearly(api):
    await _make_trigger(api, "f/t/cap", "cap", "capture")
    cases = [
        ("GET", "events/get/not-a-uuid", 400, "id"),
        ("GET", f"events/get/{uuid.uuid4()}", 404, None),
        ("POST", f"events/replay/{uuid.uuid4()}", 404, None),
        ("GET", "events/list?limit=0", 400, "limit"),
        ("GET", "events/list?limit=many", 400, "limit"),
        ("GET", "events/list?status=lost", 400, "status"),
        ("GET", f"triggers/{KIND}/events/f/t/none", 404, None),
        ("GET", "triggers/nokind/events/f/t/cap", 404, None),
        ("POST", f"triggers/{KIND}/resume/f/t/none", 404, None),
    ]
    for method, tail, status, field in cases:
        r = await api.client.request(method, api.url(tail), headers=api.headers)
        assert r.status == status, (tail, await r.text())
        err = (await r.json())["error"]
        assert err["message"] and (field is None or err["field"] == field), (tail, err)
    r = await api.post(f"triggers/{KIND}/cancel_suspended/f/t/cap", {"reason": 5})
    assert r.status == 400 and (await r.json())["error"]["field"] == "reason"


async def test_replay_of_an_event_whose_script_is_gone_is_a_conflict(api):
    await _make_trigger(api, "f/t/cap", "cap", "capture")
    sent = await _send(api, "cap", {"n": 1})
    r = await api.post("scripts/archive/p/u/admin/echo")
    assert r.status == 200
    r = await api.post(f"events/replay/{sent['event_id']}")
    assert r.status == 409 and (await r.json())["error"]["field"] == "script_path"
