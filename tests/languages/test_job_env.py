"""A job's environment: cleared, its own short-lived token, its identity under Headrace and Windmill names."""
from __future__ import annotations

import base64
import os

import pytest

MASTER_KEY = base64.b64encode(os.urandom(32)).decode()

DUMP_ENV = """\
import json
import os
import urllib.error
import urllib.request

def main():
    with open("/proc/self/environ", "rb") as f:
        proc_environ = f.read().replace(b"\\0", b"\\n").decode(errors="replace")
    base, token, job_id = os.environ["BASE_INTERNAL_URL"], os.environ["WM_TOKEN"], os.environ["WM_JOB_ID"]
    request = urllib.request.Request(
        f"{base}/api/w/{os.environ['WM_WORKSPACE']}/jobs_u/get/{job_id}?no_logs=true",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    return {"env": dict(os.environ), "proc_environ": proc_environ, "self_status": status,
            "self_body": body}
"""


@pytest.fixture(autouse=True)
def server_secrets(monkeypatch, settings):
    """The server process holds a database URL and a master key, in its environment and settings."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HEADRACE_MASTER_KEY", MASTER_KEY)
    settings.master_key = MASTER_KEY


def assert_no_server_secrets(text: str, settings) -> None:
    assert "DATABASE_URL" not in text
    assert "HEADRACE_MASTER_KEY" not in text
    assert MASTER_KEY not in text
    assert settings.database_url not in text
    db_name = settings.database_url.rsplit("/", 1)[1]
    assert db_name not in text


async def test_python_job_sees_only_its_own_cleared_environment(api, settings):
    await api.create_script("u/admin/env_dump", DUMP_ENV)
    job_id = await api.run_async("u/admin/env_dump")
    job = await api.wait_job(job_id)
    assert job["success"], job["result"]
    out = job["result"]
    env = out["env"]

    # Nothing of the server's: not its secrets, not any other variable it happens to have.
    assert_no_server_secrets(repr(env), settings)
    assert_no_server_secrets(out["proc_environ"], settings)
    inherited = {k for k, v in env.items() if os.environ.get(k) == v} - {"PATH", "LANG", "PYTHONUNBUFFERED"}
    assert inherited == set()

    # Its identity, under Headrace's and Windmill's names.
    assert env["WM_JOB_ID"] == env["HEADRACE_JOB_ID"] == job_id
    assert env["WM_WORKSPACE"] == env["HEADRACE_WORKSPACE"] == "main"
    assert env["WM_JOB_PATH"] == env["HEADRACE_JOB_PATH"] == "u/admin/env_dump"
    assert env["BASE_INTERNAL_URL"] == env["WM_BASE_URL"] == env["HEADRACE_API_URL"] == settings.api_base_url
    assert env["WM_TOKEN"] == env["HEADRACE_TOKEN"]
    assert env["WM_STATE_PATH"].startswith("u/admin/env_dump")
    assert env.get("WM_STATE_PATH_NEW", "unset") != ""

    # The token works while the job runs...
    assert out["self_status"] == 200, out["self_body"]
    assert out["self_body"]["id"] == job_id and out["self_body"]["running"] is True
    # ...and is dead once it has finished.
    r = await api.client.get(f"/api/w/main/jobs_u/get/{job_id}",
                             headers={"Authorization": f"Bearer {env['WM_TOKEN']}"})
    assert r.status == 401, await r.text()
    # The admin's token still reads the job: the 401 is about the job token, not the route.
    assert (await api.get(f"jobs_u/get/{job_id}")).status == 200


async def test_each_job_gets_a_different_token(api):
    await api.create_script("u/admin/token", "import os\n\ndef main():\n    return os.environ['WM_TOKEN']\n")
    (s1, t1), (s2, t2) = await api.run_wait("u/admin/token"), await api.run_wait("u/admin/token")
    assert (s1, s2) == (200, 200)
    assert t1 != t2 and t1.startswith("hr_")


async def test_bash_job_environment_is_cleared_too(api, settings):
    script = "python3 -c 'import json, os; print(json.dumps(dict(os.environ)))'\n"
    await api.create_script("u/admin/bash_env", script, language="bash")
    status, env = await api.run_wait("u/admin/bash_env")
    assert status == 200, env
    assert_no_server_secrets(repr(env), settings)
    assert env["WM_WORKSPACE"] == "main" and env["WM_JOB_PATH"] == "u/admin/bash_env"
    assert env["WM_TOKEN"].startswith("hr_")
