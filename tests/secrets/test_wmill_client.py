"""A script written for Windmill, using PyPI `wmill` (installed through the dependency mechanism), runs unchanged."""
from __future__ import annotations

WMILL_SCRIPT = """\
import wmill

def main(label: str):
    secret = wmill.get_variable("u/admin/api_key")
    wmill.set_variable("u/admin/last_label", label)              # created on the first run (404 probe)
    wmill.set_variable("u/admin/last_label", label + "!")        # updated on the second call
    conn = wmill.get_resource("f/svc/conn")
    missing = wmill.get_resource("f/svc/none", none_if_undefined=True)
    wmill.set_resource("u/admin/by_script", {"label": label})    # module-level: path first, type "any"
    count = (wmill.get_state() or 0) + 1
    wmill.set_state(count)
    return {"secret": secret, "conn": conn, "missing": missing, "count": count,
            "state_path": wmill.get_state_path(), "again": wmill.get_variable("u/admin/last_label")}
"""


async def test_wmill_script_runs_unchanged_and_keeps_state(api):
    r = await api.post("variables/create", {"path": "u/admin/api_key", "value": "k-123456", "is_secret": True,
                                            "description": ""})
    assert r.status == 201
    r = await api.post("resources/create", {"path": "f/svc/conn", "resource_type": "any",
                                            "value": {"token": "$var:u/admin/api_key", "url": "http://x"}})
    assert r.status == 201

    await api.create_script("u/admin/counter", WMILL_SCRIPT)  # pins and installs wmill (once per cache)
    first = await api.wait_job(await api.run_async("u/admin/counter", {"label": "one"}), timeout=120)
    assert first["success"], (first["result"], first.get("logs"))
    out = first["result"]
    assert out["secret"] == "k-123456"
    assert out["conn"] == {"token": "k-123456", "url": "http://x"}
    assert out["missing"] is None
    assert out["count"] == 1 and out["state_path"] == "u/admin/counter/user"
    assert out["again"] == "one!"

    second = await api.wait_job(await api.run_async("u/admin/counter", {"label": "two"}), timeout=60)
    assert second["success"], second["result"]
    assert second["result"]["count"] == 2

    r = await api.get("resources/get/u/admin/counter/user")
    state = await r.json()
    assert state["resource_type"] == "state" and state["value"] == 2
    r = await api.get("resources/get/u/admin/by_script")
    assert (await r.json())["resource_type"] == "any"
    r = await api.get("variables/get/u/admin/last_label")
    body = await r.json()
    assert body["value"] == "two!" and body["is_secret"] is False
