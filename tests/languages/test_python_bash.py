"""The Python and Bash language plugins: main()'s schema, and real jobs in real interpreters."""
from __future__ import annotations

import json
import uuid

import pytest

from headrace.core.languages import JobContext, ScriptError
from headrace.plugins.languages.bash import Bash, bash_schema
from headrace.plugins.languages.python import Python3, main_schema


# -- Python: main()'s signature becomes a JSON schema ---------------------------------------------

def test_python_schema_types_defaults_and_required():
    schema = main_schema(
        "from typing import Literal, Optional\n"
        "def main(name: str, count: int, ratio: float, on: bool = False, tags: list[str] = [],\n"
        "         mode: Literal['fast', 'slow'] = 'fast', extra: Optional[int] = None,\n"
        "         maybe: str | None = None, opts: dict = {}, anything=3):\n"
        "    pass\n"
    )
    props = schema["properties"]
    assert schema["required"] == ["name", "count", "ratio"]
    assert schema["order"] == ["name", "count", "ratio", "on", "tags", "mode", "extra", "maybe", "opts", "anything"]
    assert props["name"] == {"type": "string"}
    assert props["count"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number"}
    assert props["on"] == {"type": "boolean", "default": False}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert props["mode"] == {"enum": ["fast", "slow"], "default": "fast"}
    assert props["extra"] == {"type": ["integer", "null"], "default": None}
    assert props["maybe"] == {"type": ["string", "null"], "default": None}
    assert props["opts"] == {"type": "object", "default": {}}
    assert props["anything"] == {"default": 3}
    assert schema["additionalProperties"] is False


def test_python_schema_optional_without_default_is_not_required_and_kwargs_allow_more():
    schema = main_schema("import typing\ndef main(a: typing.Optional[str], *, b: int, **rest):\n    pass\n")
    assert schema["required"] == ["b"]
    assert schema["properties"]["a"] == {"type": ["string", "null"]}
    assert schema["additionalProperties"] is True


@pytest.mark.parametrize("source, message, line", [
    ("def main(:\n    pass\n", "invalid Python", 1),
    ("x = 1\n\ndef helper():\n    pass\n", "must define a top-level function main()", 1),
    ("import asyncio\n\nasync def main():\n    pass\n", "not async def", 3),
])
def test_python_schema_errors_name_the_problem_and_line(source, message, line):
    with pytest.raises(ScriptError) as info:
        main_schema(source)
    assert message in info.value.message and info.value.line == line


# -- Bash: `name="$1"` lines declare the arguments -------------------------------------------------

def test_bash_schema_reads_positional_arguments():
    schema = bash_schema('#!/bin/bash\nname="$1"\ngreeting="${2:-hello there}"\necho "$greeting $name"\n')
    assert schema["order"] == ["name", "greeting"]
    assert schema["required"] == ["name"]
    assert schema["properties"] == {"name": {"type": "string"},
                                    "greeting": {"type": "string", "default": "hello there"}}


def test_bash_schema_rejects_a_gap_in_positions():
    with pytest.raises(ScriptError, match=r"\$2 is never named"):
        bash_schema('a="$1"\nc="$3"\n')


# -- running real jobs -------------------------------------------------------------------------------

class Job:
    """A job directory as the worker prepares it: the script and args.json, a cleared environment."""

    def __init__(self, tmp_path, language, content: str, args: dict):
        self.dir = tmp_path / "job"
        self.dir.mkdir()
        (self.dir / language.file_name).write_text(content)
        (self.dir / "args.json").write_text(json.dumps(args))
        self.chunks: list[str] = []
        self.ctx = JobContext(
            id=uuid.uuid4(), workspace_id="main", script_path="u/admin/t", script_hash=None,
            content=content, args=args, job_dir=self.dir,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.dir), "LANG": "C.UTF-8"},
            log=self.chunks.append,
        )
        self.language = language

    @property
    def log(self) -> str:
        return "".join(self.chunks)

    async def run(self):
        return await self.language.run(self.ctx)


@pytest.fixture
def python_lang():
    lang = Python3()
    yield lang
    keeper = getattr(lang, "zygotes", None)  # the zygote, when the plugin keeps one
    if keeper is not None and hasattr(keeper, "close"):
        keeper.close()


async def test_python_job_reads_args_from_the_json_file_and_returns_json(tmp_path, python_lang):
    args = {"payload": {"items": [1, 2.5, "x", None, True]}, "factor": 3}
    job = Job(tmp_path, python_lang, (
        "def main(payload: dict, factor: int = 1):\n"
        "    return {'n': len(payload['items']) * factor, 'echo': payload}\n"
    ), args)
    outcome = await job.run()
    assert outcome.success and outcome.status == "success"
    assert outcome.result == {"n": 15, "echo": args["payload"]}


async def test_python_stdout_and_stderr_reach_the_job_log(tmp_path, python_lang):
    job = Job(tmp_path, python_lang, (
        "import sys\n\ndef main():\n    print('to stdout')\n    print('to stderr', file=sys.stderr)\n    return None\n"
    ), {})
    outcome = await job.run()
    assert outcome.success and outcome.result is None
    assert "to stdout" in job.log and "to stderr" in job.log


async def test_python_exception_fails_the_job_with_name_message_and_stack(tmp_path, python_lang):
    job = Job(tmp_path, python_lang, (
        "def helper(x):\n    raise ValueError(f'bad value {x}')\n\ndef main(x: int):\n    helper(x)\n"
    ), {"x": 7})
    outcome = await job.run()
    assert (outcome.success, outcome.status) == (False, "failure")
    error = outcome.result["error"]
    assert (error["name"], error["message"]) == ("ValueError", "bad value 7")
    assert "Traceback" in error["stack"] and "main.py" in error["stack"] and "helper" in error["stack"]
    assert "ValueError: bad value 7" in job.log  # the traceback is in the log too


async def test_python_hard_exit_fails_the_job_with_its_code(tmp_path, python_lang):
    job = Job(tmp_path, python_lang, "import os, sys\n\ndef main():\n    sys.stderr.write('dying\\n')\n    sys.stderr.flush()\n    os._exit(4)\n", {})
    outcome = await job.run()
    assert not outcome.success
    assert outcome.result["error"]["name"] == "ExitCode" and "4" in outcome.result["error"]["message"]


async def test_python_sys_exit_is_a_failure_not_a_result(tmp_path, python_lang):
    job = Job(tmp_path, python_lang, "import sys\n\ndef main():\n    sys.exit(2)\n", {})
    outcome = await job.run()
    assert not outcome.success and outcome.result["error"]["name"] in ("SystemExit", "ExitCode")


async def test_python_job_gets_only_the_environment_it_is_given(tmp_path, python_lang, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://secret@db/prod")
    job = Job(tmp_path, python_lang, "import os\n\ndef main():\n    return sorted(os.environ)\n", {})
    job.ctx.env["WM_JOB_ID"] = str(job.ctx.id)
    outcome = await job.run()
    assert outcome.success
    assert "DATABASE_URL" not in outcome.result and "WM_JOB_ID" in outcome.result


async def test_bash_positional_args_and_json_last_line(tmp_path):
    job = Job(tmp_path, Bash(), (
        'name="$1"\ncount="${2:-1}"\nopts="$3"\necho "hello $name" >&2\n'
        'echo "{\\"name\\": \\"$name\\", \\"count\\": $count, \\"opts\\": $opts}"\n'
    ), {"name": "ada", "count": 3, "opts": {"a": [1]}})
    outcome = await job.run()
    assert outcome.success
    assert outcome.result == {"name": "ada", "count": 3, "opts": {"a": [1]}}
    assert "hello ada" in job.log


async def test_bash_plain_last_line_is_a_string_and_result_json_wins(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = await Job(tmp_path / "a", Bash(), 'echo first\necho "all done"\n', {}).run()
    assert (plain.success, plain.result) == (True, "all done")
    job = Job(tmp_path / "b", Bash(), 'echo noise\necho \'{"from": "file"}\' > ./result.json\n', {})
    outcome = await job.run()
    assert outcome.result == {"from": "file"}


async def test_bash_non_zero_exit_fails_with_stderr_in_the_message(tmp_path):
    job = Job(tmp_path, Bash(), 'echo "working"\necho "disk full" >&2\nexit 5\n', {})
    outcome = await job.run()
    assert (outcome.success, outcome.status) == (False, "failure")
    assert outcome.result["error"]["name"] == "ExitCode"
    assert "code 5" in outcome.result["error"]["message"] and "disk full" in outcome.result["error"]["message"]
    assert "working" in job.log and "disk full" in job.log
