"""Run async, run-and-wait, logs and cancel through the API of a running server (with its worker)."""
from __future__ import annotations

import asyncio
import uuid

from headrace.hub.app import WORKER

SLOW_PRINTER = '''import time

def main(n: int = 3):
    for i in range(n):
        print(f"tick {i}", flush=True)
        time.sleep(0.4)
    return {"ticks": n}
'''


async def test_run_async_answers_201_with_a_bare_uuid(api):
    await api.create_script("u/admin/double", "def main(x: int):\n    return {'double': x * 2, 'of': [x]}\n")
    r = await api.post("jobs/run/p/u/admin/double", {"x": 21})
    assert r.status == 201
    assert r.content_type == "text/plain"
    text = await r.text()
    assert str(uuid.UUID(text)) == text  # nothing but the id: Windmill's clients read it as is
    job = await api.wait_job(text)
    assert (job["success"], job["result"]) == (True, {"double": 42, "of": [21]})


async def test_run_wait_result_returns_the_json_result(api):
    await api.create_script("u/admin/shape", 'def main(name: str, tags: list[str] = []):\n'
                                              '    return {"name": name, "tags": tags, "none": None, "f": 0.5}\n')
    status, body = await api.run_wait("u/admin/shape", {"name": "n", "tags": ["a", "b"]})
    assert (status, body) == (200, {"name": "n", "tags": ["a", "b"], "none": None, "f": 0.5})


async def test_run_wait_result_of_a_failing_job_names_the_error(api):
    await api.create_script("u/admin/fails", "def main():\n    raise KeyError('missing thing')\n")
    status, body = await api.run_wait("u/admin/fails")
    assert status == 422
    err = body["error"]
    assert (err["code"], err["name"]) == ("job_failed", "KeyError")
    assert "missing thing" in err["message"] and "Traceback" in err["stack"]


async def test_logs_are_readable_while_the_job_runs(api):
    await api.create_script("u/admin/ticker", SLOW_PRINTER)
    job_id = await api.run_async("u/admin/ticker")
    seen_running = None
    for _ in range(200):
        r = await api.get(f"jobs_u/get/{job_id}")
        body = await r.json()
        if body["type"] == "QueuedJob" and body["running"] and "tick 0" in body["logs"]:
            logs = await (await api.get(f"jobs_u/get_logs/{job_id}")).text()
            seen_running = logs
            break
        await asyncio.sleep(0.03)
    assert seen_running is not None and "tick 0" in seen_running
    done = await api.wait_job(job_id)
    assert done["result"] == {"ticks": 3}
    assert [ln for ln in done["logs"].splitlines() if ln.startswith("tick")] == ["tick 0", "tick 1", "tick 2"]


async def test_cancel_running_and_waiting_jobs_through_the_api(api):
    await api.create_script("u/admin/sleeper", "import time\n\ndef main():\n    print('up', flush=True)\n    time.sleep(30)\n")
    running = await api.run_async("u/admin/sleeper")
    r = await api.post("jobs/run/p/u/admin/sleeper?scheduled_in_secs=600", {})
    waiting = await r.text()

    r = await api.post(f"jobs_u/queue/cancel/{waiting}", {"reason": "not today"})
    assert r.status == 200
    job = await api.wait_job(waiting, timeout=5)
    assert (job["status"], job["canceled"], job["result"]["error"]["name"]) == ("canceled", True, "Canceled")

    for _ in range(200):
        if "up" in await (await api.get(f"jobs_u/get_logs/{running}")).text():
            break
        await asyncio.sleep(0.03)
    r = await api.post(f"jobs_u/queue/cancel/{running}", {})
    assert r.status == 200
    job = await api.wait_job(running)
    assert (job["status"], job["success"]) == ("canceled", False)

    r = await api.post(f"jobs_u/queue/cancel/{running}", {})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_completed"
    r = await api.post(f"jobs_u/queue/cancel/{uuid.uuid4()}", {})
    assert r.status == 404 and (await r.json())["error"]["code"] == "job_not_found"


async def test_standalone_server_runs_jobs_on_its_own_worker(api, settings):
    worker = api.client.server.app[WORKER]
    assert worker.slots == settings.worker_slots
    await api.create_script("u/admin/hello", "echo hello", language="bash")
    job_id = await api.run_async("u/admin/hello")
    job = await api.wait_job(job_id)
    assert job["result"] == "hello"
    async with worker.pool.acquire() as conn:
        ran_on = await conn.fetchval("SELECT worker FROM completed_jobs WHERE id = $1", uuid.UUID(job_id))
    assert ran_on == worker.name
