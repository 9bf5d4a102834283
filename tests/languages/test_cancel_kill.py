"""Cancel and timeout end a job's whole process group: nothing it started survives it."""
from __future__ import annotations

import asyncio
import uuid

import psutil
import pytest

BASH_SPAWNER = """\
marker="$1"
sleep 1000 &
bash -c "sleep 1000; echo $marker" &
echo started
wait
"""

PYTHON_SPAWNER = """\
import subprocess
import sys
import time

def main(marker: str):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", marker])
    # This one ignores SIGTERM: only the SIGKILL after the grace period ends it.
    subprocess.Popen([sys.executable, "-c",
                      "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)",
                      marker])
    subprocess.Popen(["sleep", "1000"])
    print("started", flush=True)
    time.sleep(1000)
"""


def job_processes(marker: str, job_id: str) -> list[psutil.Process]:
    """Live processes of one job: the marker in their command line, or the job's id in their environment."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if marker in " ".join(p.info["cmdline"] or []):
            found.append(p)
            continue
        try:
            if p.environ().get("WM_JOB_ID") == job_id:
                found.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


async def wait_for(predicate, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("language", ["bash", "python3"])
@pytest.mark.parametrize("stop", ["cancel", "timeout"])
async def test_stopping_a_job_kills_everything_it_started(api, language, stop):
    marker = f"hr-mark-{uuid.uuid4().hex}"
    content = BASH_SPAWNER if language == "bash" else PYTHON_SPAWNER
    path = f"u/admin/spawner_{language}"
    await api.create_script(path, content, language=language)
    query = "?timeout=1" if stop == "timeout" else ""
    r = await api.post(f"jobs/run/p/{path}{query}", {"marker": marker})
    assert r.status == 201, await r.text()
    job_id = await r.text()

    # The job's background processes are running (with the marker, or only the job's id: `sleep 1000`).
    expected = 3 if language == "python3" else 2
    started = await wait_for(lambda: len(job_processes(marker, job_id)) >= expected, 10, "the job's children")
    assert started
    assert any(p.name() == "sleep" and p.cmdline() == ["sleep", "1000"] for p in job_processes(marker, job_id))

    if stop == "cancel":
        r = await api.post(f"jobs_u/queue/cancel/{job_id}", {"reason": "test"})
        assert r.status == 200, await r.text()
    job = await api.wait_job(job_id, timeout=15)
    assert job["success"] is False
    if stop == "cancel":
        assert job["status"] == "canceled"
    else:
        assert job["result"]["error"]["name"] == "Timeout"

    # Killed processes are reaped asynchronously (by init): allow a moment, then nothing may remain.
    try:
        await wait_for(lambda: not job_processes(marker, job_id), 3, "the job's processes to end")
    except AssertionError:
        left = [(p.pid, p.cmdline()) for p in job_processes(marker, job_id)]
        for p in job_processes(marker, job_id):
            p.kill()
        raise AssertionError(f"processes survived the job: {left}") from None


@pytest.mark.parametrize("language", ["bash", "python3"])
async def test_a_job_that_returns_leaves_nothing_behind(api, language):
    marker = f"hr-mark-{uuid.uuid4().hex}"
    if language == "bash":
        content = 'marker="$1"\nbash -c "sleep 1000; echo $marker" &\nsleep 1000 &\necho done\n'
    else:
        content = (
            "import subprocess, sys\n\n"
            "def main(marker: str):\n"
            "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', marker])\n"
            "    subprocess.Popen(['sleep', '1000'])\n"
            "    return 'done'\n"
        )
    path = f"u/admin/returner_{language}"
    await api.create_script(path, content, language=language)
    job_id = await api.run_async(path, {"marker": marker})
    job = await api.wait_job(job_id, timeout=15)
    assert (job["success"], job["result"]) == (True, "done"), job
    await wait_for(lambda: not job_processes(marker, job_id), 3, "the job's processes to end")
