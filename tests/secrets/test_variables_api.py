"""Variables on Windmill's routes, against a running server and the real PostgreSQL."""
from __future__ import annotations

import asyncpg
from headrace.core.db import plain_dsn


async def _row(db_url: str, path: str):
    conn = await asyncpg.connect(plain_dsn(db_url))
    try:
        return await conn.fetchrow("SELECT * FROM variables WHERE workspace_id = 'main' AND path = $1", path)
    finally:
        await conn.close()


async def test_secret_is_encrypted_at_rest_and_served_decrypted(api, db_url):
    r = await api.post("variables/create", {"path": "u/admin/db_password", "value": "pa55-word-xyz",
                                            "is_secret": True, "description": "db"})
    assert r.status == 201, await r.text()
    row = await _row(db_url, "u/admin/db_password")
    assert row["is_secret"] and row["value"].startswith("enc:v1:")
    assert "pa55-word-xyz" not in row["value"]

    r = await api.get("variables/get_value/u/admin/db_password")
    assert r.status == 200 and r.content_type == "application/json"
    assert await r.json() == "pa55-word-xyz"

    r = await api.get("variables/get/u/admin/db_password")
    body = await r.json()
    assert r.status == 200 and body["value"] == "pa55-word-xyz" and body["is_secret"] and body["description"] == "db"

    # Lists never carry a secret in clear.
    r = await api.get("variables/list")
    listed = {v["path"]: v for v in await r.json()}
    assert listed["u/admin/db_password"]["value"] is None
    assert "pa55-word-xyz" not in await r.text()


async def test_plain_variable_round_trip_update_and_delete(api, db_url):
    r = await api.post("variables/create", {"path": "f/cfg/region", "value": "eu-west", "is_secret": False,
                                            "description": ""})
    assert r.status == 201
    assert (await _row(db_url, "f/cfg/region"))["value"] == "eu-west"

    r = await api.get("variables/exists/f/cfg/region")
    assert r.content_type == "application/json" and await r.json() is True
    r = await api.get("variables/exists/f/cfg/nothing")
    assert r.content_type == "application/json" and await r.json() is False

    # Partial update with the TS generator's query flag; {"value"} alone keeps the rest.
    r = await api.post("variables/update/f/cfg/region?already_encrypted=false", {"value": "us-east"})
    assert r.status == 200, await r.text()
    r = await api.get("variables/get_value/f/cfg/region?allow_cache=true")
    assert await r.json() == "us-east"

    # Turning it into a secret encrypts the stored value.
    r = await api.post("variables/update/f/cfg/region", {"is_secret": True})
    assert r.status == 200
    assert (await _row(db_url, "f/cfg/region"))["value"].startswith("enc:v1:")
    r = await api.get("variables/get_value/f/cfg/region")
    assert await r.json() == "us-east"

    r = await api.client.delete(api.url("variables/delete/f/cfg/region"), headers=api.headers)
    assert r.status == 200
    r = await api.get("variables/get/f/cfg/region")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await api.post("variables/delete/f/cfg/region")
    assert r.status == 404


async def test_missing_variable_is_exactly_404(api):
    for tail in ("variables/get/u/admin/nope", "variables/get_value/u/admin/nope"):
        r = await api.get(tail)
        assert r.status == 404, tail
    r = await api.post("variables/update/u/admin/nope", {"value": "x"})
    assert r.status == 404


async def test_bad_input_names_the_field(api):
    cases = [
        ({"path": "no-slashes", "value": "x"}, "path"),
        ({"path": "u/admin/x"}, "value"),
        ({"path": "u/admin/x", "value": 42}, "value"),
        ({"path": "u/admin/x", "value": {"a": 1}}, "value"),
        ({"path": "u/admin/x", "value": "x", "is_secret": "yes"}, "is_secret"),
        ({"path": "u/admin/x", "value": "x", "description": 5}, "description"),
    ]
    for body, field in cases:
        r = await api.post("variables/create", body)
        err = (await r.json())["error"]
        assert r.status == 400 and err["field"] == field, (body, err)
    r = await api.post("variables/create", {"path": "u/admin/x", "value": "x"})
    assert r.status == 201
    r = await api.post("variables/create", {"path": "u/admin/x", "value": "y"})
    assert r.status == 409 and (await r.json())["error"]["field"] == "path"
    r = await api.post("variables/update/u/admin/x", {"value": 3})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value"
    r = await api.post("variables/update/u/admin/x", {"path": "bad path"})
    assert r.status == 400 and (await r.json())["error"]["field"] == "path"
    r = await api.client.post(api.url("variables/create"), data=b"{not json", headers=api.headers)
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"


async def test_scopes_are_checked(server, db_url):
    from headrace.core import tokens as tok
    from headrace.core.db import make_engine

    engine = make_engine(db_url)
    async with engine.begin() as conn:
        reader = await tok.create_token(conn, "main", scopes=["variables:read"])
        nothing = await tok.create_token(conn, "main", scopes=["scripts:read"])
    await engine.dispose()
    r = await server.post("/api/w/main/variables/create", json={"path": "u/a/b", "value": "v"},
                          headers={"Authorization": f"Bearer {reader}"})
    assert r.status == 403 and "variables:write" in (await r.json())["error"]["message"]
    r = await server.get("/api/w/main/variables/list", headers={"Authorization": f"Bearer {nothing}"})
    assert r.status == 403
    r = await server.get("/api/w/main/variables/get_value/u/a/b")
    assert r.status == 401
