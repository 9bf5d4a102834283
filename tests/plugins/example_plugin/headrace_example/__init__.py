"""An example Headrace plugin: a `template` language and a route under /api/plugins/example/.

A `template` script is a Python format string; its fields become the job's (string) arguments and
the result is the filled-in text. It runs inside the worker (``isolated = False``): no process.
"""
from __future__ import annotations

import string
from typing import Any

from aiohttp import web

from headrace.core.hookspecs import hookimpl
from headrace.core.languages import JobContext, Language, ScriptError
from headrace.core.queue import Outcome


def _fields(content: str) -> list[str]:
    names: list[str] = []
    for lineno, line in enumerate(content.splitlines() or [""], start=1):
        try:
            parsed = list(string.Formatter().parse(line))
        except ValueError as exc:
            raise ScriptError(f"bad template: {exc}", line=lineno, column=1) from None
        for _, name, _, _ in parsed:
            if name is not None:
                if not name.isidentifier():
                    column = line.find("{" + name) + 1
                    raise ScriptError(f"field {name!r} must be a plain name", line=lineno, column=column)
                if name not in names:
                    names.append(name)
    return names


class Template(Language):
    id = "template"
    aliases = ("tmpl",)
    isolated = False

    def schema(self, content: str) -> dict[str, Any]:
        names = _fields(content)
        return {
            "type": "object",
            "properties": {n: {"type": "string"} for n in names},
            "required": names,
            "order": names,
            "additionalProperties": False,
        }

    async def run(self, ctx: JobContext) -> Outcome:
        return Outcome(True, ctx.content.format(**ctx.args))


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"plugin": "headrace-example", "hello": request.query.get("name", "world")})


@hookimpl
def headrace_languages():
    return [Template()]


@hookimpl
def headrace_routes():
    return [("GET", "/example/hello", hello)]
