"""The warm Python runner: every job is a fresh child forked from the worker's lean zygote."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from headrace.core.languages import JobContext
from headrace.hub.keys import LANGUAGES
from headrace.plugins.languages.python import Python3

WHO_AM_I = """\
import os

def main():
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        parent_cmdline = f.read().replace(b"\\0", b" ").decode()
    return {"pid": os.getpid(), "ppid": os.getppid(), "parent_cmdline": parent_cmdline,
            "pgid": os.getpgid(0), "cwd": os.getcwd()}
"""


async def run_direct(lang: Python3, content: str, args: dict | None = None, env: dict | None = None,
                     files: dict[str, str] | None = None):
    """Run one job straight through the language (no queue): (outcome, log text)."""
    job_dir = Path(tempfile.mkdtemp(prefix="hr-zygote-test-"))
    (job_dir / "main.py").write_text(content)
    (job_dir / "args.json").write_text(json.dumps(args or {}))
    for name, text in (files or {}).items():
        (job_dir / name).write_text(text)
    logs: list[str] = []
    ctx = JobContext(
        id=uuid.uuid4(), workspace_id="main", script_path="u/admin/t", script_hash=None,
        content=content, args=args or {}, job_dir=job_dir,
        env={"PATH": "/usr/bin:/bin", **(env or {})}, log=logs.append,
    )
    outcome = await lang.run(ctx)
    return outcome, "".join(logs)


async def test_jobs_fork_from_the_zygote_not_the_worker(api):
    await api.create_script("u/admin/who", WHO_AM_I)
    s1, first = await api.run_wait("u/admin/who")
    s2, second = await api.run_wait("u/admin/who")
    assert (s1, s2) == (200, 200), (first, second)
    zygote = api.client.app[LANGUAGES].resolve("python3").zygotes.current
    # Both jobs are children of the same zygote, a separate lean process running python_zygote.py.
    assert first["ppid"] == second["ppid"] == zygote.pid
    assert first["ppid"] != os.getpid()
    assert "python_zygote.py" in first["parent_cmdline"]
    assert psutil.Process(zygote.pid).ppid() == os.getpid()
    # Each job is a fresh child, leader of its own process group, in its own job dir.
    assert first["pid"] != second["pid"]
    assert first["pgid"] == first["pid"]
    assert first["cwd"] != second["cwd"]


async def test_module_globals_do_not_leak_between_jobs(api):
    script = """\
import json
import sys

counter = 0

def main():
    global counter
    counter += 1
    seen = getattr(json, "headrace_marker", None), "leaky_module" in sys.modules
    json.headrace_marker = "set by an earlier job"
    sys.modules["leaky_module"] = json
    return {"seen": seen, "counter": counter}
"""
    await api.create_script("u/admin/leak", script)
    results = [await api.run_wait("u/admin/leak") for _ in range(3)]
    assert results == [(200, {"seen": [None, False], "counter": 1})] * 3


async def test_compiled_script_is_cached_by_hash():
    lang = Python3()
    outcome, _ = await run_direct(lang, "def main(x: int):\n    return x + 1\n", {"x": 1})
    assert outcome.result == 2
    assert (lang.zygotes.forks, lang.zygotes.cache_hits) == (1, 0)
    outcome, _ = await run_direct(lang, "def main(x: int):\n    return x + 1\n", {"x": 5})
    assert outcome.result == 6
    assert (lang.zygotes.forks, lang.zygotes.cache_hits) == (2, 1)
    outcome, _ = await run_direct(lang, "def main(x: int):\n    return x + 2\n", {"x": 5})
    assert outcome.result == 7
    assert (lang.zygotes.forks, lang.zygotes.cache_hits) == (3, 1)  # other source: compiled anew
    lang.zygotes.current.close()


async def test_a_dead_zygote_is_replaced():
    lang = Python3()
    outcome, _ = await run_direct(lang, WHO_AM_I)
    first_zygote = outcome.result["ppid"]
    os.kill(first_zygote, signal.SIGKILL)
    outcome, _ = await run_direct(lang, WHO_AM_I)
    assert outcome.success, outcome.result
    assert outcome.result["ppid"] not in (first_zygote, os.getpid())
    assert "python_zygote.py" in outcome.result["parent_cmdline"]
    assert lang.zygotes.starts == 2
    lang.zygotes.current.close()


async def test_zygote_dying_mid_job_fails_the_job_and_ends_its_processes():
    lang = Python3()
    marker = f"hr-orphan-{uuid.uuid4().hex}"
    script = f"""\
import os, signal, subprocess, sys, time

def main():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", "{marker}"])
    time.sleep(0.2)
    os.kill(os.getppid(), signal.SIGKILL)  # the zygote
    time.sleep(1000)
"""
    outcome, _ = await run_direct(lang, script)
    assert not outcome.success
    assert outcome.result["error"]["name"] == "ZygoteDied"
    assert not [p for p in psutil.process_iter(["cmdline", "status"])
                if marker in (p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE]


async def test_output_streams_and_errors_keep_the_users_traceback():
    lang = Python3()
    script = "import sys\n\ndef main():\n    print('to stdout')\n    print('to stderr', file=sys.stderr)\n" \
             "    raise ValueError('bad value')\n"
    outcome, log = await run_direct(lang, script)
    assert "to stdout" in log and "to stderr" in log
    error = outcome.result["error"]
    assert (error["name"], error["message"]) == ("ValueError", "bad value")
    assert 'File "main.py", line 6, in main' in error["stack"]
    assert "python_wrapper" not in error["stack"]
    lang.zygotes.current.close()


@pytest.mark.parametrize("via", ["env", "paths.json"])
async def test_extra_paths_go_on_the_childs_sys_path(via, tmp_path):
    # The seam for cached third-party packages: HEADRACE_EXTRA_PATHS or JOB_DIR/paths.json.
    pkg_dir = tmp_path / "site"
    pkg_dir.mkdir()
    module = f"hr_extra_{uuid.uuid4().hex[:8]}"
    (pkg_dir / f"{module}.py").write_text("VALUE = 'from the cache'\n")
    # A dynamic import: the dependency inference must not try to install this module from PyPI.
    script = f"import importlib\n\ndef main():\n    return importlib.import_module('{module}').VALUE\n"
    env = {"HEADRACE_EXTRA_PATHS": str(pkg_dir)} if via == "env" else {}
    files = {"paths.json": json.dumps([str(pkg_dir)])} if via == "paths.json" else {}
    lang = Python3()
    outcome, log = await run_direct(lang, script, env=env, files=files)
    assert outcome.result == "from the cache", log
    # The next job, without the extra path, cannot import it: the zygote's sys.path is untouched.
    outcome, _ = await run_direct(lang, script)
    assert outcome.result["error"]["name"] == "ModuleNotFoundError"
    lang.zygotes.current.close()


async def test_concurrent_jobs_each_get_their_own_child():
    lang = Python3()
    script = "import os\n\ndef main(n: int):\n    return [n, os.getpid(), os.getppid()]\n"
    outcomes = await asyncio.gather(*(run_direct(lang, script, {"n": n}) for n in range(6)))
    results = [o.result for o, _ in outcomes]
    assert [r[0] for r in results] == list(range(6))
    assert len({r[1] for r in results}) == 6  # six children
    assert {r[2] for r in results} == {lang.zygotes.current.pid}  # one zygote
    lang.zygotes.current.close()
