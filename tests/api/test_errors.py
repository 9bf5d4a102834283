"""Bad input always gets a clear JSON 4xx naming the problem, never a 500."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from headrace.hub.app import make_app

ADD = "def main(a: int, b: int = 2, tags: list = []):\n    return a + b\n"


async def _error(r, status: int) -> dict:
    assert r.status == status, await r.text()
    assert r.content_type == "application/json"
    error = (await r.json())["error"]
    assert error["code"] and error["message"]
    return error


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2"])
async def test_body_that_is_not_json(api, raw):
    r = await api.client.post("/api/w/main/scripts/create", data=raw, headers=api.headers)
    error = await _error(r, 400)
    assert error["code"] == "invalid_json" and "not valid JSON" in error["message"]


async def test_body_that_is_not_an_object(api):
    r = await api.client.post("/api/w/main/scripts/create", data=b"[1]", headers=api.headers)
    assert "JSON object" in (await _error(r, 400))["message"]
    r = await api.client.post("/api/w/main/scripts/create", data=b"", headers=api.headers)
    assert "empty" in (await _error(r, 400))["message"]


@pytest.mark.parametrize("missing", ["path", "content", "language"])
async def test_missing_fields(api, missing):
    body = {"path": "u/admin/x", "content": ADD, "language": "python3"}
    del body[missing]
    error = await _error(await api.post("scripts/create", body), 400)
    assert error["code"] == "missing_field" and error["field"] == missing and missing in error["message"]


@pytest.mark.parametrize("field, value", [("path", 7), ("content", ["x"]), ("summary", {}), ("language", None)])
async def test_fields_of_the_wrong_type(api, field, value):
    body = {"path": "u/admin/x", "content": ADD, "language": "python3", field: value}
    error = await _error(await api.post("scripts/create", body), 400)
    assert error["field"] == field


@pytest.mark.parametrize("path", ["greet", "x/admin/greet", "u/admin", "u/ad min/x", "u/admin/../x/"])
async def test_bad_paths(api, path):
    error = await _error(await api.post("scripts/create", {"path": path, "content": ADD, "language": "python3"}), 400)
    assert error["field"] == "path" and "u/<user>/<name>" in error["message"]


async def test_unknown_language_lists_the_languages(api):
    error = await _error(await api.post("scripts/create", {"path": "u/admin/x", "content": ADD, "language": "cobol"}), 400)
    assert error["field"] == "language" and "cobol" in error["message"]
    assert {"python3", "bash"} <= set(error["available"])
    assert "python3" in error["message"]


async def test_script_that_does_not_parse(api):
    content = "def main(a):\n    return (a +\n\nx = 1 1\n"
    error = await _error(await api.post("scripts/create", {"path": "u/admin/x", "content": content,
                                                           "language": "python3"}), 400)
    assert error["field"] == "content"
    assert isinstance(error["line"], int) and error["line"] >= 2
    assert isinstance(error["column"], int) and error["column"] >= 1
    content = "x = 1\n  y = 2\ndef main():\n    pass\n"
    error = await _error(await api.post("scripts/create", {"path": "u/admin/x", "content": content,
                                                           "language": "python3"}), 400)
    assert error["line"] == 2


async def test_python_script_without_main(api):
    error = await _error(await api.post("scripts/create", {"path": "u/admin/x", "content": "x = 1\n",
                                                           "language": "python3"}), 400)
    assert error["field"] == "content" and "main" in error["message"]


@pytest.mark.parametrize("route", ["jobs/run/p/u/admin/nothing", "jobs/run_wait_result/p/u/admin/nothing",
                                   "jobs/run/h/0123456789abcdef"])
async def test_unknown_script_is_404(api, route):
    error = await _error(await api.post(route, {}), 404)
    assert error["code"] == "script_not_found"


async def test_unknown_script_get_is_404(api):
    for tail in ("scripts/get/p/u/admin/nothing", "scripts/get/h/0123456789abcdef", "scripts/history/p/u/admin/none"):
        error = await _error(await api.get(tail), 404)
        assert "nothing" in error["message"] or "0123456789abcdef" in error["message"] or "none" in error["message"]


@pytest.mark.parametrize("args, field, words", [
    ({}, "a", "missing required argument"),
    ({"a": "forty"}, "a", "is not of type 'integer'"),
    ({"a": 1, "b": 2.5}, "b", "integer"),
    ({"a": 1, "tags": "x"}, "tags", "array"),
    ({"a": 1, "c": 3}, "c", "unknown argument"),
])
async def test_bad_args_name_the_field(api, args, field, words):
    await api.create_script("u/admin/add", ADD)
    for route in ("jobs/run/p/u/admin/add", "jobs/run_wait_result/p/u/admin/add"):
        error = await _error(await api.post(route, args), 400)
        assert error["code"] == "invalid_args" and error["field"] == field and words in error["message"]


async def test_args_that_are_not_an_object(api):
    await api.create_script("u/admin/add", ADD)
    error = await _error(await api.post("jobs/run/p/u/admin/add", [1, 2]), 400)
    assert "JSON object" in error["message"]
    r = await api.client.post("/api/w/main/jobs/run/p/u/admin/add", data=b"{oops", headers=api.headers)
    assert (await _error(r, 400))["code"] == "invalid_json"


@pytest.mark.parametrize("query, field", [("priority=high", "priority"), ("scheduled_in_secs=-5", "scheduled_in_secs"),
                                          ("timeout=0", "timeout"), ("parent_job=nope", "parent_job")])
async def test_bad_query_parameters(api, query, field):
    await api.create_script("u/admin/add", ADD)
    error = await _error(await api.post(f"jobs/run/p/u/admin/add?{query}", {"a": 1}), 400)
    assert error["field"] == field


async def test_bad_job_ids(api):
    error = await _error(await api.get("jobs_u/get/not-a-uuid"), 400)
    assert "not a job id" in error["message"]
    await _error(await api.get("jobs_u/get/6abf912c-64fa-418c-9cfe-712c06d43de3"), 404)


async def test_unknown_route_is_json_404(api):
    error = await _error(await api.get("no/such/thing"), 404)
    assert "/api/w/main/no/such/thing" in error["message"]


async def test_body_over_the_size_limit(settings, admin_token):
    settings.max_body_bytes = 4096
    client = TestClient(TestServer(make_app(settings, worker=False), host=settings.host, port=settings.port))
    await client.start_server()
    try:
        h = {"Authorization": f"Bearer {admin_token}"}
        r = await client.post("/api/w/main/scripts/create", headers=h,
                              json={"path": "u/admin/big", "language": "python3",
                                    "content": "def main():\n    return 1\n" + "#" * 5000})
        error = await _error(r, 413)
        assert error["code"] == "payload_too_large" and error["limit"] == 4096
        r = await client.post("/api/w/main/jobs/run/p/u/admin/big", headers=h, json={"x": "y" * 5000})
        await _error(r, 413)
        # A chunked body carries no Content-Length: it is cut off while it is read.
        async def chunks():
            yield b'{"path": "u/admin/big", "language": "python3", "content": "'
            for _ in range(10):
                yield b"#" * 1000
            yield b'"}'
        r = await client.post("/api/w/main/scripts/create", headers=h, data=chunks())
        await _error(r, 413)
        # Just under the limit is fine.
        r = await client.post("/api/w/main/scripts/create", headers=h,
                              json={"path": "u/admin/big", "language": "python3",
                                    "content": "def main():\n    return 1\n" + "#" * 3000})
        assert r.status == 201
    finally:
        await client.close()
