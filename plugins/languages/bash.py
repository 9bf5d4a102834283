"""Bash scripts, Windmill style: `name="$1"` / `name="${2:-default}"` lines declare the arguments.

The result is ./result.json when the script writes one, else the last line of stdout (as JSON when it
parses, else as a string).
"""
from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from headrace.core.hookspecs import hookimpl
from headrace.core.languages import JobContext, Language, ScriptError
from headrace.core.process import run_process
from headrace.core.queue import Outcome

_ARG = re.compile(r'^\s*(?:local\s+|declare\s+)?([A-Za-z_][A-Za-z0-9_]*)="\$(?:(\d+)|\{(\d+)(?::-(.*?))?\})"\s*$')


_SYNTAX = re.compile(r"line (\d+): (.*)")
_NEAR_TOKEN = re.compile(r"near unexpected token `(.*)'")


def check_syntax(content: str) -> None:
    """Raise ScriptError with the line (and the column of the offending token) if bash cannot parse it."""
    try:
        proc = subprocess.run(["bash", "-n", "/dev/stdin"], input=content.encode(), capture_output=True,
                              timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return  # no bash here to ask: the job itself will report the error
    if proc.returncode == 0:
        return
    lines = content.splitlines() or [""]
    for err in proc.stderr.decode(errors="replace").splitlines():
        m = _SYNTAX.search(err)
        if m:
            line = min(int(m.group(1)), len(lines))  # "unexpected end of file" is one past the end
            token = _NEAR_TOKEN.search(m.group(2))
            # bash names the token, not its column: take its last occurrence on the line (earlier
            # ones were parsed fine, e.g. as arguments).
            col = lines[line - 1].rfind(token.group(1)) + 1 if token else 0
            raise ScriptError(f"invalid Bash: {m.group(2)}", line, col or None)
    raise ScriptError(f"invalid Bash: {proc.stderr.decode(errors='replace').strip()}")


def bash_schema(content: str) -> dict[str, Any]:
    args: dict[int, tuple[str, str | None]] = {}
    for line in content.splitlines():
        m = _ARG.match(line)
        if m:
            name, pos, pos_braced, default = m.groups()
            args.setdefault(int(pos or pos_braced), (name, default))
    if args and sorted(args) != list(range(1, len(args) + 1)):
        missing = sorted(set(range(1, max(args) + 1)) - set(args))
        raise ScriptError(f"positional argument ${missing[0]} is never named")
    order = [args[i][0] for i in sorted(args)]
    properties = {}
    required = []
    for i in sorted(args):
        name, default = args[i]
        prop: dict[str, Any] = {"type": "string"}
        if default is not None:
            prop["default"] = default
        else:
            required.append(name)
        properties[name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "order": order,
        "additionalProperties": False,
    }


def _as_arg(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


class Bash(Language):
    id = "bash"
    aliases = ("sh",)
    file_name = "main.sh"

    def schema(self, content: str) -> dict[str, Any]:
        check_syntax(content)
        return bash_schema(content)

    async def run(self, ctx: JobContext) -> Outcome:
        order = bash_schema(ctx.content)["order"]
        argv = ["bash", "main.sh"] + [_as_arg(ctx.args[name]) for name in order if name in ctx.args]
        proc = await run_process(argv, ctx)
        if proc.returncode != 0:
            detail = proc.stderr_tail or proc.last_line
            return Outcome.failure("ExitCode", f"bash exited with code {proc.returncode}: {detail}".rstrip(": "))
        result_file = ctx.job_dir / "result.json"
        if result_file.exists():
            return Outcome(True, json.loads(result_file.read_text()))
        try:
            return Outcome(True, json.loads(proc.last_line))
        except ValueError:
            return Outcome(True, proc.last_line)


@hookimpl
def headrace_languages():
    return [Bash()]
