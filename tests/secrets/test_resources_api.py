"""Resources on Windmill's routes: raw and interpolated values, probes, bad input."""
from __future__ import annotations


async def _create(api, path, value, resource_type="any", **extra):
    r = await api.post("resources/create", {"path": path, "value": value, "resource_type": resource_type, **extra})
    assert r.status == 201, await r.text()


async def test_interpolation_at_any_depth(api):
    r = await api.post("variables/create", {"path": "u/admin/pg_pass", "value": "s3cr3t-pg", "is_secret": True,
                                            "description": ""})
    assert r.status == 201
    await _create(api, "f/db/host", {"host": "db.local", "port": 5432})
    await _create(api, "f/db/main", {
        "password": "$var:u/admin/pg_pass",
        "server": "$res:f/db/host",
        "replicas": [{"auth": ["$var:u/admin/pg_pass", 7, None]}, "$res:f/db/host"],
        "note": "text that mentions $var:u/admin/pg_pass mid-string stays",
    })
    r = await api.get("resources/get_value_interpolated/f/db/main?job_id=x&allow_cache=true")
    assert r.status == 200 and r.content_type == "application/json"
    assert await r.json() == {
        "password": "s3cr3t-pg",
        "server": {"host": "db.local", "port": 5432},
        "replicas": [{"auth": ["s3cr3t-pg", 7, None]}, {"host": "db.local", "port": 5432}],
        "note": "text that mentions $var:u/admin/pg_pass mid-string stays",
    }
    r = await api.get("resources/get_value/f/db/main")
    assert r.content_type == "application/json" and (await r.json())["password"] == "$var:u/admin/pg_pass"


async def test_any_json_value_and_probes(api):
    for i, value in enumerate([3, [1, 2], "plain", None, True, {"nested": {"a": [1]}}]):
        await _create(api, f"u/admin/state_{i}", value, "state")
        r = await api.get(f"resources/get_value_interpolated/u/admin/state_{i}")
        assert r.status == 200 and await r.json() == value
    r = await api.get("resources/exists/u/admin/state_0")
    assert r.content_type == "application/json" and await r.json() is True
    r = await api.get("resources/exists/u/admin/none")
    assert r.content_type == "application/json" and await r.json() is False
    r = await api.get("resources/get/u/admin/state_0")
    body = await r.json()
    assert body["resource_type"] == "state" and body["value"] == 3 and body["path"] == "u/admin/state_0"

    r = await api.post("resources/update_value/u/admin/state_0", {"value": {"count": 4}})
    assert r.status == 200
    r = await api.get("resources/get_value/u/admin/state_0")
    assert await r.json() == {"count": 4}

    r = await api.get("resources/list?resource_type=state")
    assert len(await r.json()) == 6

    r = await api.client.delete(api.url("resources/delete/u/admin/state_0"), headers=api.headers)
    assert r.status == 200
    r = await api.post("resources/delete/u/admin/state_1")
    assert r.status == 200
    r = await api.get("resources/list")
    assert {x["path"] for x in await r.json()} == {f"u/admin/state_{i}" for i in range(2, 6)}


async def test_missing_resource_is_exactly_404(api):
    for tail in ("resources/get_value_interpolated/u/admin/nope", "resources/get_value/u/admin/nope",
                 "resources/get/u/admin/nope"):
        r = await api.get(tail)
        assert r.status == 404, tail
    r = await api.post("resources/update_value/u/admin/nope", {"value": 1})
    assert r.status == 404


async def test_cycle_and_dangling_reference_are_4xx(api):
    await _create(api, "f/loop/a", {"next": "$res:f/loop/b"})
    await _create(api, "f/loop/b", ["$res:f/loop/a"])
    r = await api.get("resources/get_value_interpolated/f/loop/a")
    err = (await r.json())["error"]
    assert r.status == 422 and err["code"] == "interpolation_too_deep", err
    await _create(api, "f/loop/self", "$res:f/loop/self")
    r = await api.get("resources/get_value_interpolated/f/loop/self")
    assert r.status == 422

    await _create(api, "f/dangling/x", {"k": "$var:u/admin/missing"})
    r = await api.get("resources/get_value_interpolated/f/dangling/x")
    err = (await r.json())["error"]
    assert r.status == 422 and err["reference"] == "$var:u/admin/missing"
    # The raw value is still readable.
    r = await api.get("resources/get_value/f/dangling/x")
    assert r.status == 200


async def test_a_deep_but_finite_chain_resolves(api):
    for i in range(40):
        await _create(api, f"f/chain/r{i}", {"v": i, "next": f"$res:f/chain/r{i + 1}"} if i < 39 else i)
    r = await api.get("resources/get_value_interpolated/f/chain/r0")
    value = await r.json()
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert r.status == 200 and value == 39 and depth == 39


async def test_bad_input_names_the_field(api):
    cases = [
        ({"path": "x", "value": 1, "resource_type": "any"}, "path"),
        ({"path": "u/admin/r", "resource_type": "any"}, "value"),
        ({"path": "u/admin/r", "value": 1}, "resource_type"),
        ({"path": "u/admin/r", "value": 1, "resource_type": "postgresql-unregistered"}, "resource_type"),
        ({"path": "u/admin/r", "value": 1, "resource_type": 5}, "resource_type"),
        ({"path": "u/admin/r", "value": 1, "resource_type": "any", "description": []}, "description"),
    ]
    for body, field in cases:
        r = await api.post("resources/create", body)
        err = (await r.json())["error"]
        assert r.status == 400 and err["field"] == field, (body, err)
    await _create(api, "u/admin/r", 1)
    r = await api.post("resources/create", {"path": "u/admin/r", "value": 2, "resource_type": "any"})
    assert r.status == 409
    r = await api.post("resources/create?update_if_exists=true", {"path": "u/admin/r", "value": 2,
                                                                  "resource_type": "any"})
    assert r.status == 201
    r = await api.get("resources/get_value/u/admin/r")
    assert await r.json() == 2
    r = await api.post("resources/update_value/u/admin/r", {"val": 3})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value"


async def test_builtin_resource_types_check_their_values(api):
    r = await api.post("resources/create", {"path": "u/admin/db", "resource_type": "postgresql",
                                            "value": {"host": "db.local", "port": "not-a-var-but-a-string-is-ok"}})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value.dbname"
    r = await api.post("resources/create", {"path": "u/admin/db", "resource_type": "postgresql",
                                            "value": {"host": "db.local", "port": 5432, "dbname": "app",
                                                      "password": "$var:u/admin/pg_password"}})
    assert r.status == 201, await r.text()
    r = await api.post("resources/update/u/admin/db", {"resource_type": "smtp"})
    assert r.status == 200  # the stored value has a host, which is all smtp requires
    r = await api.post("resources/update/u/admin/db", {"resource_type": "s3"})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value.bucket"
