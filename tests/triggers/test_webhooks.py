"""Webhooks: every script callable by path and hash, async and sync, through the event ledger."""
from __future__ import annotations

import uuid

import aiohttp
import pytest

from headrace.core import tokens as tok
from headrace.core.db import make_engine

ECHO = "def main(**kwargs):\n    return kwargs\n"
ADD = "def main(a: int, b: int = 1):\n    return a + b\n"
SHAPED = '''
def main(status: int = 201):
    return {"headrace_response": {"status_code": status, "content_type": "text/csv",
                                  "headers": {"X-Made-By": "script"}, "body": "a,b\\n1,2\\n"}}
'''
PLAIN_DICT = '''
def main():
    return {"status_code": 418, "headers": {"x": "y"}, "body": "not a response"}
'''
FAILS = "def main():\n    raise ValueError('no such order 42')\n"


async def make_token(db_url: str, scopes: list[str]) -> str:
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            return await tok.create_token(conn, "main", scopes=scopes)
    finally:
        await engine.dispose()


async def _events(api, path: str) -> list[dict]:
    r = await api.get("events/list", params={"script_path": path})
    assert r.status == 200, await r.text()
    return await r.json()


async def test_async_by_path_answers_bare_job_id_and_records_the_event_with_its_job(api):
    await api.create_script("u/admin/add", ADD)
    r = await api.post("jobs/run/p/u/admin/add", {"a": 2, "b": 5})
    assert r.status == 201 and r.content_type == "text/plain"
    job_id = await r.text()
    assert str(uuid.UUID(job_id)) == job_id  # no quotes, no JSON
    job = await api.wait_job(job_id)
    assert job["success"] and job["result"] == 7
    events = await _events(api, "u/admin/add")
    assert len(events) == 1
    ev = events[0]
    assert ev["job_id"] == job_id and ev["kind"] == "webhook" and ev["source"] == "script:u/admin/add"
    assert ev["status"] == "queued" and ev["payload"]["body"] == {"a": 2, "b": 5}
    assert r.headers["X-Headrace-Event-Id"] == ev["id"]


async def test_hash_runs_that_version_and_path_runs_the_latest(api):
    h1 = await api.create_script("u/admin/ver", "def main():\n    return 'one'\n")
    h2 = await api.create_script("u/admin/ver", "def main():\n    return 'two'\n")
    assert h1 != h2
    assert await api.run_wait("u/admin/ver") == (200, "two")
    r = await api.post(f"jobs/run_wait_result/h/{h1}", {})
    assert (r.status, await r.json()) == (200, "one")
    r = await api.post(f"jobs/run/h/{h1}", {})
    assert r.status == 201
    assert (await api.wait_job(await r.text()))["result"] == "one"
    r = await api.post("jobs/run/h/0000000000000000", {})
    assert r.status == 404 and (await r.json())["error"]["code"] == "script_not_found"


async def test_sync_result_can_shape_status_content_type_and_headers(api):
    await api.create_script("u/admin/shaped", SHAPED)
    r = await api.post("jobs/run_wait_result/p/u/admin/shaped", {"status": 202})
    assert r.status == 202
    assert r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["X-Made-By"] == "script"
    assert await r.text() == "a,b\n1,2\n"
    assert uuid.UUID(r.headers["X-Headrace-Job-Id"])


async def test_an_ordinary_dict_result_is_not_read_as_a_response(api):
    await api.create_script("u/admin/plain", PLAIN_DICT)
    r = await api.post("jobs/run_wait_result/p/u/admin/plain", {})
    assert r.status == 200 and r.content_type == "application/json"
    assert await r.json() == {"status_code": 418, "headers": {"x": "y"}, "body": "not a response"}


async def test_a_malformed_shaped_response_is_a_clear_error(api):
    await api.create_script("u/admin/shaped", SHAPED)
    r = await api.post("jobs/run_wait_result/p/u/admin/shaped", {"status": 99})
    assert r.status == 502
    assert (await r.json())["error"]["field"] == "headrace_response.status_code"


async def test_failed_job_on_sync_call_answers_the_error(api):
    await api.create_script("u/admin/fails", FAILS)
    r = await api.post("jobs/run_wait_result/p/u/admin/fails", {})
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["code"] == "job_failed" and err["name"] == "ValueError"
    assert "no such order 42" in err["message"] and uuid.UUID(err["job_id"])


async def test_body_to_args_json_other_json_form_and_multipart(api):
    await api.create_script("u/admin/echo", ECHO)
    url = "jobs/run_wait_result/p/u/admin/echo"
    r = await api.post(url, {"x": 1, "y": [2]})
    assert await r.json() == {"x": 1, "y": [2]}
    r = await api.post(url, [1, 2, 3])
    assert await r.json() == {"body": [1, 2, 3]}
    r = await api.post(url, "just a string")
    assert await r.json() == {"body": "just a string"}
    r = await api.client.post(api.url(url), data={"name": "ada", "age": "36"}, headers=api.headers)
    assert await r.json() == {"name": "ada", "age": "36"}
    form = aiohttp.FormData()
    form.add_field("title", "report")
    form.add_field("upload", b"\x00\x01hello", filename="r.bin", content_type="application/x-test")
    r = await api.client.post(api.url(url), data=form, headers=api.headers)
    body = await r.json()
    assert body["title"] == "report"
    assert body["upload"] == {"filename": "r.bin", "content_type": "application/x-test", "base64": "AAFoZWxsbw=="}
    r = await api.client.post(api.url(url), data="hello there", headers={**api.headers, "Content-Type": "text/plain"})
    assert await r.json() == {"body": "hello there"}


async def test_raw_body_and_chosen_headers_become_args(api):
    await api.create_script("u/admin/echo", ECHO)
    raw = '{"b": 2,  "a": 1}'
    r = await api.client.post(
        api.url("jobs/run_wait_result/p/u/admin/echo"), data=raw,
        params={"raw": "true", "include_header": "X-Signature,X-Missing"},
        headers={**api.headers, "Content-Type": "application/json", "X-Signature": "sha256=abc"},
    )
    assert r.status == 200
    assert await r.json() == {"a": 1, "b": 2, "raw_string": raw, "x_signature": "sha256=abc"}
    # Credentials never reach the job, even when asked for.
    r = await api.client.post(api.url("jobs/run_wait_result/p/u/admin/echo"), json={},
                              params={"include_header": "Authorization"}, headers=api.headers)
    assert await r.json() == {}
    ev = (await _events(api, "u/admin/echo"))[0]
    assert "authorization" not in ev["payload"]["headers"]


async def test_bad_bodies_are_clear_4xx(api, settings):
    await api.create_script("u/admin/add", ADD)
    r = await api.client.post(api.url("jobs/run/p/u/admin/add"), data=b"{oops",
                              headers={**api.headers, "Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    r = await api.post("jobs/run/p/u/admin/add", {"b": 1})
    err = (await r.json())["error"]
    assert r.status == 400 and err["field"] == "a"
    big = b'{"a": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    r = await api.client.post(api.url("jobs/run/p/u/admin/add"), data=big, headers=api.headers)
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"

    async def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    r = await api.client.post(api.url("jobs/run/p/u/admin/add"), data=chunks(), headers=api.headers)
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"
    assert await _events(api, "u/admin/add") == []


async def test_token_scoped_to_one_script_and_token_in_query(api):
    await api.create_script("u/admin/add", ADD)
    await api.create_script("u/admin/echo", ECHO)
    r = await api.post("tokens/create", {"scopes": ["jobs:run"], "script_path": "u/admin/add", "label": "hook"})
    assert r.status == 201
    hook = (await r.json())["token"]
    r = await api.client.post(api.url("jobs/run_wait_result/p/u/admin/add"), json={"a": 1},
                              params={"token": hook})
    assert (r.status, await r.json()) == (200, 2)
    r = await api.client.post(api.url("jobs/run/p/u/admin/echo"), json={}, params={"token": hook})
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    r = await api.client.post(api.url("jobs/run/p/u/admin/add"), json={"a": 1}, params={"token": "hr_wrong"})
    assert r.status == 401
    assert [e["script_path"] for e in await _events(api, "u/admin/echo")] == []


async def test_every_run_route_checks_token_workspace_and_scope(api, db_url):
    await api.create_script("u/admin/add", ADD)
    reader = await make_token(db_url, scopes=["jobs:read"])
    for route in ("jobs/run/p/u/admin/add", "jobs/run_wait_result/p/u/admin/add"):
        r = await api.client.post(api.url(route), json={"a": 1})
        assert r.status == 401
        r = await api.client.post(api.url(route), json={"a": 1}, headers={"Authorization": f"Bearer {reader}"})
        assert r.status == 403 and (await r.json())["error"]["scope"] == "jobs:run"
        r = await api.client.post(f"/api/w/other/{route}", json={"a": 1}, headers=api.headers)
        assert r.status == 403
    assert await _events(api, "u/admin/add") == []


@pytest.mark.parametrize("route", ["jobs/run/p/u/admin/add", "jobs/run_wait_result/p/u/admin/add"])
async def test_idempotency_key_returns_the_first_job(api, route):
    await api.create_script("u/admin/add", ADD)
    key = {**api.headers, "Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await api.client.post(api.url(route), json={"a": 1}, headers=key)
    second = await api.client.post(api.url(route), json={"a": 100}, headers=key)
    assert first.status in (200, 201) and second.status == 200
    if route.startswith("jobs/run/"):
        first_id, second_id = await first.text(), await second.text()
    else:
        assert await first.json() == await second.json() == 2  # the first job's result
        first_id, second_id = first.headers["X-Headrace-Job-Id"], second.headers["X-Headrace-Job-Id"]
    assert first_id == second_id
    other = await api.client.post(api.url(route), json={"a": 5},
                                  headers={**api.headers, "Idempotency-Key": "another"})
    assert other.status in (200, 201)
    events = await _events(api, "u/admin/add")
    assert sorted(e["dedup_key"] for e in events) == sorted([key["Idempotency-Key"], "another"])
    r = await api.get("jobs/list", params={"script_path_exact": "u/admin/add"})
    assert len(await r.json()) == 2
