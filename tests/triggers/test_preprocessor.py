"""The preprocessor: a script's preprocessor(event) turns a trigger's event into main()'s arguments.

Python (forked from the zygote) and TypeScript (bun), for the schedule and webhook kinds.
"""
from __future__ import annotations

import os
import uuid

import pytest
from headrace.plugins.languages.typescript import find_bun
from schedule_support import Sql, create_trigger, eventually

PY = '''
def preprocessor(event):
    return {"kind": event["kind"], "when": event.get("scheduled_for"), "body": event.get("body"),
            "method": event.get("method")}

def main(kind: str, when=None, body=None, method=None):
    return {"kind": kind, "when": when, "body": body, "method": method}
'''

TS = '''
export async function preprocessor(event: any) {
  return { kind: event.kind, when: event.scheduled_for ?? null, body: event.body ?? null,
           method: event.method ?? null };
}

export async function main(kind: string, when: string | null, body: any, method: string | null) {
  return { kind, when, body, method, lang: "ts" };
}
'''

needs_bun = pytest.mark.skipif(
    find_bun() is None and not os.environ.get("CI"),  # on CI a missing runtime fails
    reason="bun is not installed (.ci/run installs it)",
)
LANGS = [pytest.param("python3", PY, id="python"), pytest.param("bun", TS, id="typescript", marks=needs_bun)]


async def schema_of(api, path: str) -> dict:
    r = await api.get(f"scripts/get/p/{path}")
    assert r.status == 200
    return (await r.json())["schema"]


@pytest.mark.parametrize("language,source", LANGS)
async def test_schema_marks_a_preprocessor(api, language, source):
    await api.create_script("f/p/with", source, language)
    assert (await schema_of(api, "f/p/with")).get("x-preprocessor") is True
    plain = ("def main(x: int):\n    return x\n" if language == "python3"
             else "export async function main(x: number) { return x; }\n")
    await api.create_script("f/p/plain", plain, language)
    assert "x-preprocessor" not in await schema_of(api, "f/p/plain")


@pytest.mark.parametrize("language,source", LANGS)
async def test_schedule_event_goes_through_the_preprocessor(api, db_url, language, source):
    await api.create_script("f/p/script", source, language)
    t = await create_trigger(api, "schedule", {"path": "f/p/sched", "script_path": "f/p/script",
                                               "config": {"cron": "* * * * * *"}})
    tid = uuid.UUID(t["id"])
    async with Sql(db_url) as sql:
        rows = await eventually(lambda: sql.jobs_of(tid))
        await api.post("triggers/schedule/setmode/f/p/sched", {"mode": "disabled"})
        payload = (await sql.fetch("SELECT payload FROM events WHERE job_id = $1", rows[0]["id"]))[0]["payload"]
    job = rows[0]
    assert job["success"], job["result"]
    assert job["args"] == {"__headrace_event": {"kind": "schedule", **payload}}
    assert job["result"]["kind"] == "schedule"
    assert job["result"]["when"] == payload["scheduled_for"]
    assert payload["trigger_path"] == "f/p/sched"


@pytest.mark.parametrize("language,source", LANGS)
async def test_webhook_event_goes_through_the_preprocessor(api, language, source):
    await api.create_script("f/p/hook", source, language)
    status, result = await api.run_wait("f/p/hook", {"order": 42})
    assert status == 200, result
    assert result["kind"] == "webhook" and result["method"] == "POST"
    assert result["body"] == {"order": 42}


async def test_a_preprocessor_that_returns_no_object_fails_clearly(api):
    await api.create_script("f/p/bad", "def preprocessor(event):\n    return [1]\n\ndef main(x=1):\n    return x\n")
    status, body = await api.run_wait("f/p/bad", {"a": 1})
    assert status == 422
    assert body["error"]["name"] == "TypeError" and "preprocessor" in body["error"]["message"]


@needs_bun
async def test_a_typescript_preprocessor_that_returns_no_object_fails_clearly(api):
    await api.create_script("f/p/badts", "export function preprocessor(e: any) { return 5; }\n"
                                         "export function main(x = 1) { return x; }\n", "bun")
    status, body = await api.run_wait("f/p/badts", {"a": 1})
    assert status == 422
    assert body["error"]["name"] == "TypeError" and "preprocessor" in body["error"]["message"]


def test_fresh_interpreter_path_calls_the_preprocessor_too(tmp_path):
    """The fallback runner (a new interpreter, no zygote) shares call_entry with the zygote path."""
    import json
    import subprocess
    import sys

    from headrace.plugins.languages.python import WRAPPER

    (tmp_path / "main.py").write_text(PY)
    (tmp_path / "args.json").write_text(json.dumps({"__headrace_event": {"kind": "schedule",
                                                                         "scheduled_for": "2030-01-01T00:00:00Z"}}))
    proc = subprocess.run([sys.executable, WRAPPER, str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"kind": "schedule", "when": "2030-01-01T00:00:00Z", "body": None, "method": None}


def test_a_commented_out_preprocessor_is_not_one():
    from headrace.plugins.languages.python import main_schema as py_schema
    from headrace.plugins.languages.typescript import Bun

    ts = '// export function preprocessor(e) {}\nconst s = "export function preprocessor(";\n' \
         'export function main(x = 1) { return x; }\n'
    assert "x-preprocessor" not in Bun().schema(ts)
    assert Bun().schema("export const preprocessor = (e: any) => e;\nexport function main() {}\n")["x-preprocessor"]
    assert "x-preprocessor" not in py_schema("# def preprocessor(e): ...\ndef main():\n    pass\n")
    assert "x-preprocessor" not in py_schema("class C:\n    def preprocessor(self, e): ...\ndef main():\n    pass\n")
