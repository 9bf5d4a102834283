"""Python 3 scripts: `def main(...)` with type hints becomes the job's JSON schema."""
from __future__ import annotations

import ast
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from headrace.core.hookspecs import hookimpl
from headrace.core.languages import JobContext, Language, ScriptError, outcome_from_job_dir
from headrace.core.ledger import PREPROCESSOR_KEY
from headrace.core.process import run_process
from headrace.core.queue import Outcome

from . import deps_python
from .python_zygote_client import PipeReader, ZygoteDied, ZygoteKeeper

log = logging.getLogger(__name__)

WRAPPER = str(Path(__file__).with_name("python_wrapper.py"))
DRAIN_S = 0.5

_SIMPLE_TYPES = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "dict": {"type": "object"},
    "list": {"type": "array"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "Any": {},
}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.List, datetime.datetime
        return node.attr
    return ""


def annotation_schema(node: ast.AST | None) -> tuple[dict[str, Any], bool]:
    """(schema, optional) for one annotation; optional is True for Optional[X] and X | None."""
    if node is None:
        return {}, False
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}, True
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            return annotation_schema(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {}, False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = _union_parts(node)
        return _union(parts)
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        inner = node.slice
        items = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        if outer == "Optional":
            schema, _ = annotation_schema(items[0])
            return schema, True
        if outer == "Union":
            return _union(items)
        if outer in ("List", "list", "Sequence", "Set", "set", "Tuple", "tuple"):
            item_schema, _ = annotation_schema(items[0]) if items else ({}, False)
            return {"type": "array", "items": item_schema}, False
        if outer in ("Dict", "dict", "Mapping"):
            return {"type": "object"}, False
        if outer == "Literal":
            values = [ast.literal_eval(i) for i in items]
            return {"enum": values}, False
        return {}, False
    return dict(_SIMPLE_TYPES.get(_name(node), {})), False


def _union_parts(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_parts(node.left) + _union_parts(node.right)
    return [node]


def _union(parts: list[ast.AST]) -> tuple[dict[str, Any], bool]:
    optional = any(isinstance(p, ast.Constant) and p.value is None for p in parts)
    rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None)]
    schemas = [annotation_schema(p)[0] for p in rest]
    if len(schemas) == 1:
        return schemas[0], optional
    return {"anyOf": schemas}, optional


def main_schema(content: str) -> dict[str, Any]:
    """JSON Schema of ``main``'s parameters, read from the source without running it."""
    try:
        tree = ast.parse(content, filename="main.py")
    except SyntaxError as exc:
        raise ScriptError(f"invalid Python: {exc.msg}", exc.lineno, exc.offset) from None
    mains = [
        n for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "main"
    ]
    if not mains:
        raise ScriptError("the script must define a top-level function main()", 1, 1)
    fn = mains[-1]
    if isinstance(fn, ast.AsyncFunctionDef):
        raise ScriptError("main() must be a plain function, not async def", fn.lineno, fn.col_offset + 1)
    params = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    defaults: dict[str, ast.AST] = {}
    positional = fn.args.posonlyargs + fn.args.args
    for param, default in zip(positional[len(positional) - len(fn.args.defaults):], fn.args.defaults):
        defaults[param.arg] = default
    for param, default in zip(fn.args.kwonlyargs, fn.args.kw_defaults):
        if default is not None:
            defaults[param.arg] = default
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params:
        schema, optional = annotation_schema(param.annotation)
        if param.arg in defaults:
            try:
                schema["default"] = ast.literal_eval(defaults[param.arg])
            except ValueError:
                pass  # a computed default: leave it to Python
        elif not optional:
            required.append(param.arg)
        if optional and "type" in schema and schema["type"] != "null":
            schema = {**schema, "type": [schema["type"], "null"]}
        properties[param.arg] = schema
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "order": [p.arg for p in params],
        "additionalProperties": fn.args.kwarg is not None,
    }
    if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "preprocessor" for n in tree.body):
        schema[PREPROCESSOR_KEY] = True  # trigger events reach main() through preprocessor(event)
    return schema


class Python3(Language):
    """Jobs fork from a warm zygote (python_zygote.py); a fresh interpreter is the fallback."""

    id = "python3"
    aliases = ("python", "py")
    file_name = "main.py"

    def __init__(self):
        self.zygotes = ZygoteKeeper()

    def schema(self, content: str) -> dict[str, Any]:
        return main_schema(content)

    async def lock(self, content: str, cache_dir: Path) -> str | None:
        return await deps_python.save_time_lock(content, cache_dir)

    async def run(self, ctx: JobContext) -> Outcome:
        ctx.env["PYTHONUNBUFFERED"] = "1"
        failed = await deps_python.prepare_job(ctx)  # cached third-party packages -> paths.json
        if failed is not None:
            return failed
        # A zygote that died before forking the job is replaced once; then a fresh interpreter.
        for attempt in (1, 2):
            try:
                returncode, stderr_tail = await self._run_forked(ctx)
                break
            except ZygoteDied as exc:
                if exc.started:
                    return Outcome.failure("ZygoteDied", str(exc))
                if attempt == 2:
                    log.warning("the Python zygote keeps dying; running in a fresh interpreter")
                    returncode, stderr_tail = await self._run_fresh(ctx)
            except OSError as exc:  # no zygote could be started
                log.warning("Python zygote unavailable, running in a fresh interpreter: %s", exc)
                returncode, stderr_tail = await self._run_fresh(ctx)
                break
        return self._outcome(ctx, returncode, stderr_tail)

    async def _run_forked(self, ctx: JobContext) -> tuple[int, str]:
        zygote = self.zygotes.get()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            spawn = await zygote.spawn(ctx.job_dir, ctx.env, out_w, err_w)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        readers = [PipeReader(out_r, ctx.log), PipeReader(err_r, ctx.log)]
        done = asyncio.gather(*(r.done for r in readers))
        try:
            pgid = await spawn.started
            ctx.process_groups.add(pgid)
            self.zygotes.forks += 1
            self.zygotes.cache_hits += spawn.cached
            returncode = await spawn.exited
            # The zygote has killed what was left in the job's group; a process that left the group
            # may still hold the pipes open, so drain only briefly.
            try:
                await asyncio.wait_for(asyncio.shield(done), DRAIN_S)
            except asyncio.TimeoutError:
                pass
        except BaseException:
            spawn.abandon(signal.SIGKILL)
            raise
        finally:
            if spawn.pid is not None:
                ctx.process_groups.discard(spawn.pid)
            for r in readers:
                r.close()
        return returncode, readers[1].text()[-2000:].strip()

    async def _run_fresh(self, ctx: JobContext) -> tuple[int, str]:
        proc = await run_process([sys.executable, "-s", "-E", WRAPPER, str(ctx.job_dir)], ctx)
        return proc.returncode, proc.stderr_tail

    @staticmethod
    def _outcome(ctx: JobContext, returncode: int, stderr_tail: str) -> Outcome:
        return outcome_from_job_dir(ctx.job_dir, returncode, stderr_tail, "the Python process")


@hookimpl
def headrace_languages():
    return [Python3()]
