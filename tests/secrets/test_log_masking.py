"""A secret printed by a job is stored as ***** in its log; other text and other workspaces' logs are kept."""
from __future__ import annotations

import asyncpg
from headrace.core.db import plain_dsn

PRINTER = """\
import os, sys, urllib.request, json

def main(extra: str):
    req = urllib.request.Request(
        os.environ["BASE_INTERNAL_URL"] + "/api/w/main/variables/get_value/u/admin/token",
        headers={"Authorization": "Bearer " + os.environ["WM_TOKEN"]})
    secret = json.load(urllib.request.urlopen(req))
    print("token is", secret, "and again:" + secret, flush=True)
    sys.stderr.write("half " + secret[:5] + " / short one: abc / plain: " + extra + "\\n")
    print("multi-line secret: " + "$(line1)\\nline2-of-the-secret", flush=True)
    return len(secret)
"""


async def _stored_logs(db_url: str, job_id: str) -> str:
    conn = await asyncpg.connect(plain_dsn(db_url))
    try:
        rows = await conn.fetch("SELECT chunk FROM job_logs WHERE job_id = $1 ORDER BY id", __import__("uuid").UUID(job_id))
    finally:
        await conn.close()
    return "".join(r["chunk"] for r in rows)


async def test_printed_secret_is_masked_before_it_reaches_the_database(api, db_url):
    for path, value in (("u/admin/token", "tok-9f8e7d6c5b"), ("u/admin/short", "abc"),
                        ("u/admin/multi", "$(line1)\nline2-of-the-secret")):
        r = await api.post("variables/create", {"path": path, "value": value, "is_secret": True, "description": ""})
        assert r.status == 201
    # A plain variable is not a secret: its value stays visible.
    r = await api.post("variables/create", {"path": "u/admin/plain", "value": "visible-value", "is_secret": False})
    assert r.status == 201

    await api.create_script("u/admin/printer", PRINTER)
    job = await api.wait_job(await api.run_async("u/admin/printer", {"extra": "visible-value"}))
    assert job["success"] and job["result"] == len("tok-9f8e7d6c5b"), job["result"]

    stored = await _stored_logs(db_url, job["id"])
    assert "tok-9f8e7d6c5b" not in stored and "line2-of-the-secret" not in stored
    assert "token is ***** and again:*****" in stored
    assert "multi-line secret: *****" in stored
    # A prefix of a secret, a secret shorter than 4 characters and plain values are kept.
    assert "half tok-9" in stored and "short one: abc" in stored and "plain: visible-value" in stored

    r = await api.get(f"jobs_u/get_logs/{job['id']}")
    assert "tok-9f8e7d6c5b" not in await r.text()


async def test_secret_created_between_jobs_is_masked_in_the_next_job(api, db_url):
    echo = 'x="$1"\necho "value: $x"\n'
    await api.create_script("u/admin/echo", echo, language="bash")
    first = await api.wait_job(await api.run_async("u/admin/echo", {"x": "later-secret-1234"}))
    assert "value: later-secret-1234" in await _stored_logs(db_url, first["id"])

    r = await api.post("variables/create", {"path": "u/admin/later", "value": "later-secret-1234",
                                            "is_secret": True, "description": ""})
    assert r.status == 201
    second = await api.wait_job(await api.run_async("u/admin/echo", {"x": "later-secret-1234"}))
    assert second["success"]
    assert "value: *****" in await _stored_logs(db_url, second["id"])
