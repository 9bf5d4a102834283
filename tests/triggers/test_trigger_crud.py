"""CRUD and modes of `http` triggers through /api/w/{w}/triggers/http/..., on a running server."""
from __future__ import annotations

from headrace.plugins.triggers.http.config import MASK


async def test_create_list_get_update_delete(http_triggers, echo_script, server, wait_route):
    body = {"path": "f/t/hook", "script_path": echo_script, "summary": "a hook",
            "config": {"route_path": "/hooks/:id", "method": "PUT", "request_type": "sync"}}
    status, created = await http_triggers.create(body)
    assert status == 201, created
    assert created["config"]["route_path"] == "/hooks/:id" and created["mode"] == "enabled"

    status, listed = await http_triggers.list()
    assert status == 200 and [t["path"] for t in listed] == ["f/t/hook"]
    status, got = await http_triggers.get("f/t/hook")
    assert status == 200 and got["config"] == created["config"] and got["summary"] == "a hook"

    await wait_route(server, "PUT", "/main/hooks/7")
    r = await server.put("/api/r/main/hooks/7", json={"x": 1})
    assert r.status == 200 and await r.json() == {"x": 1, "id": "7"}

    status, updated = await http_triggers.update(
        "f/t/hook", {"config": {"route_path": "/hooks2/:id", "method": "PUT", "request_type": "sync"}})
    assert status == 200 and updated["config"]["route_path"] == "/hooks2/:id"
    await wait_route(server, "PUT", "/main/hooks/7", gone=True)
    await wait_route(server, "PUT", "/main/hooks2/7")

    status, gone = await http_triggers.delete("f/t/hook")
    assert status == 200, gone
    await wait_route(server, "PUT", "/main/hooks2/7", gone=True)
    r = await server.put("/api/r/main/hooks2/7", json={"x": 1})
    assert r.status == 404
    status, missing = await http_triggers.get("f/t/hook")
    assert status == 404 and missing["error"]["code"] == "not_found"
    status, _ = await http_triggers.delete("f/t/hook")
    assert status == 404


BAD_CONFIGS = [
    ({}, "config.route_path"),
    ({"route_path": "no-slash"}, "config.route_path"),
    ({"route_path": "/a/*rest/b"}, "config.route_path"),
    ({"route_path": "/a/:1bad"}, "config.route_path"),
    ({"route_path": "/a", "method": "FETCH"}, "config.method"),
    ({"route_path": "/a", "request_type": "stream"}, "config.request_type"),
    ({"route_path": "/a", "surprise": 1}, "config"),
    ({"route_path": "/a", "auth": {}}, "config.auth.method"),
    ({"route_path": "/a", "auth": {"method": "api_key"}}, "config.auth.secret"),
    ({"route_path": "/a", "auth": {"method": "basic", "username": "u"}}, "config.auth.password"),
    ({"route_path": "/a", "auth": {"method": "hmac", "secret": "s"}}, "config.auth.preset"),
    ({"route_path": "/a", "auth": {"method": "hmac", "preset": "custom", "secret": "s"}}, "config.auth.header"),
    ({"route_path": "/a", "auth": {"method": "hmac", "preset": "custom", "secret": "s", "header": "X-S",
                                   "algorithm": "md5"}}, "config.auth.algorithm"),
    ({"route_path": "/a", "auth": {"method": "hmac", "preset": "github", "secret": "s", "header": "X-S"}},
     "config.auth.header"),
    ({"route_path": "/a", "auth": {"method": "jwt", "algorithm": "HS256"}}, "config.auth.secret"),
    ({"route_path": "/a", "auth": {"method": "jwt", "algorithm": "RS256"}}, "config.auth.jwks_url"),
    ({"route_path": "/a", "auth": {"method": "jwt", "algorithm": "none", "secret": "s"}}, "config.auth.algorithm"),
    ({"route_path": "/a", "auth": {"method": "api_key", "secret": MASK}}, "config.auth.secret"),
]


async def test_bad_config_names_the_field(http_triggers, echo_script, make_route):
    for config, field in BAD_CONFIGS:
        status, body = await http_triggers.create({"path": "f/t/bad", "script_path": echo_script, "config": config})
        assert (status, body["error"]["field"]) == (400, field), (config, body)
    # The same on update; the trigger is left as it was.
    await make_route("/good", path="f/t/good")
    for config, field in BAD_CONFIGS:
        status, body = await http_triggers.update("f/t/good", {"config": config})
        assert (status, body["error"]["field"]) == (400, field), (config, body)
    _, got = await http_triggers.get("f/t/good")
    assert got["config"] == {"route_path": "/good"}


async def test_route_clash_is_409(http_triggers, make_route, echo_script):
    await make_route("/orders/:id", path="f/t/a", method="POST")
    # Same method, same shape (parameter names do not matter): refused.
    status, body = await http_triggers.create(
        {"path": "f/t/b", "script_path": echo_script, "config": {"route_path": "/orders/:order/", "method": "POST"}})
    assert status == 409 and body["error"]["field"] == "config.route_path", body
    assert "f/t/a" in body["error"]["message"]
    # "*" serves every method, so it clashes too.
    status, body = await http_triggers.create(
        {"path": "f/t/c", "script_path": echo_script, "config": {"route_path": "/orders/:x", "method": "*"}})
    assert status == 409, body
    # Another method, or another shape, is fine.
    await make_route("/orders/:id", path="f/t/d", method="GET")
    await make_route("/orders/:id/items", path="f/t/e", method="POST")
    # An update into a clash is refused; updating a route onto itself is not a clash.
    status, body = await http_triggers.update("f/t/e", {"config": {"route_path": "/orders/:z", "method": "POST"}})
    assert status == 409, body
    status, body = await http_triggers.update("f/t/a", {"config": {"route_path": "/orders/:id2", "method": "POST"}})
    assert status == 200, body
    # The same path twice is a conflict as well.
    status, body = await http_triggers.create(
        {"path": "f/t/a", "script_path": echo_script, "config": {"route_path": "/other"}})
    assert status == 409 and body["error"]["field"] == "path"


async def test_secrets_are_masked_and_kept_on_update(http_triggers, make_route, server, wait_route):
    auth = {"method": "api_key", "header": "X-Key", "secret": "s3cret-value"}
    created = await make_route("/keyed", path="f/t/k", auth=auth)
    assert created["config"]["auth"] == {**auth, "secret": MASK}
    _, got = await http_triggers.get("f/t/k")
    _, listed = await http_triggers.list()
    assert "s3cret-value" not in repr(got) and "s3cret-value" not in repr(listed)

    # Sending the read config back (secret masked) keeps the stored secret.
    got["config"]["request_type"] = "sync"
    status, updated = await http_triggers.update("f/t/k", {"config": got["config"]})
    assert status == 200 and updated["config"]["auth"]["secret"] == MASK
    await wait_route(server, "POST", "/main/keyed", lambda t: t.config.get("request_type") == "sync")
    r = await server.post("/api/r/main/keyed", json={"a": 1}, headers={"X-Key": "s3cret-value"})
    assert r.status == 200 and await r.json() == {"a": 1}

    # A mask cannot stand for a secret of another auth method.
    basic = {"method": "basic", "username": "u", "password": MASK}
    status, body = await http_triggers.update("f/t/k", {"config": {"route_path": "/keyed", "auth": basic}})
    assert status == 400 and body["error"]["field"] == "config.auth.password", body


async def test_modes(http_triggers, make_route, server, api, db, wait_route):
    await make_route("/m", path="f/t/m")
    await wait_route(server, "POST", "/main/m")

    r = await server.post("/api/r/main/m", json={"n": 1})
    assert r.status == 201
    job = await api.wait_job((await r.json())["job_id"])
    assert job["result"] == {"n": 1}

    status, body = await http_triggers.setmode("f/t/m", "disabled")
    assert status == 200 and body["mode"] == "disabled"
    await wait_route(server, "POST", "/main/m", gone=True)
    r = await server.post("/api/r/main/m", json={"n": 2})
    assert r.status == 404 and (await r.json())["error"]["code"] == "no_route"

    await http_triggers.setmode("f/t/m", "suspended")
    await wait_route(server, "POST", "/main/m", lambda t: t.mode == "suspended")
    r = await server.post("/api/r/main/m", json={"n": 3})
    assert r.status == 202, await r.text()
    suspended = await r.json()
    assert suspended["status"] == "suspended"
    jr = await api.get(f"jobs_u/get/{suspended['job_id']}")
    job = await jr.json()
    assert job["type"] == "QueuedJob" and job["scheduled_for"].startswith("9999")
    row = await db.fetchrow("SELECT status, job_id FROM events WHERE id = $1", _uuid(suspended["event_id"]))
    assert row["status"] == "suspended" and str(row["job_id"]) == suspended["job_id"]

    await http_triggers.setmode("f/t/m", "capture")
    await wait_route(server, "POST", "/main/m", lambda t: t.mode == "capture")
    r = await server.post("/api/r/main/m", json={"n": 4})
    assert r.status == 202
    captured = await r.json()
    assert captured["status"] == "captured" and captured["job_id"] is None
    row = await db.fetchrow("SELECT status, job_id FROM events WHERE id = $1", _uuid(captured["event_id"]))
    assert row["status"] == "captured" and row["job_id"] is None

    status, body = await http_triggers.setmode("f/t/m", "sideways")
    assert status == 400 and body["error"]["field"] == "mode"


def _uuid(text: str):
    import uuid

    return uuid.UUID(text)
