"""TypeScript scripts on bun: ``export async function main(...)``, run by bun's platform binary.

bun comes from the npm registry (``npm install bun``); the runner calls the platform binary itself
(``@oven/bun-linux-x64*/bin/bun``, or ``bun/bin/bun.exe`` once bun's postinstall has copied it there),
never the npm shim, which costs a Node.js start per job. Where it is looked for: $HEADRACE_BUN, then
``.tools/node_modules`` of the source checkout, ``~/.cache/headrace/tools/node_modules``, then PATH.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from headrace.core.config import Settings
from headrace.core.hookspecs import hookimpl
from headrace.core.languages import JobContext, Language, ScriptError, outcome_from_job_dir
from headrace.core.ledger import PREPROCESSOR_KEY
from headrace.core.process import run_process
from headrace.core.queue import Outcome

from . import deps_bun
from .ts_signature import defines_preprocessor, main_schema

WRAPPER = str(Path(__file__).with_name("bun_wrapper.ts"))
_TOOL_DIRS = (
    Path(__file__).resolve().parents[2] / ".tools",
    Path.home() / ".cache" / "headrace" / "tools",
)


def _is_executable_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def find_bun() -> str | None:
    """The bun binary to run jobs with, or None."""
    if os.environ.get("HEADRACE_BUN"):
        return os.environ["HEADRACE_BUN"]
    for tools in _TOOL_DIRS:
        modules = tools / "node_modules"
        candidates = sorted(modules.glob("@oven/bun-linux-*/bin/bun")) + [modules / "bun" / "bin" / "bun.exe"]
        # Prefer the baseline-free, glibc build when several were installed.
        candidates.sort(key=lambda p: ("musl" in str(p), "baseline" in str(p)))
        for candidate in candidates:
            if _is_executable_elf(candidate):
                return str(candidate)
    return shutil.which("bun")


_BUN_ERROR = re.compile(r"^error: (?P<message>.+?)\n\s+at .*?:(?P<line>\d+):(?P<column>\d+)", re.M | re.S)


async def check_syntax(content: str, bun: str) -> None:
    """Transpile the script with bun (no bundling, ~20 ms); raise ScriptError at the first error."""
    with tempfile.TemporaryDirectory(prefix="headrace-ts-") as tmp:
        Path(tmp, "main.ts").write_text(content)
        proc = await asyncio.create_subprocess_exec(
            bun, "build", "--no-bundle", "main.ts", cwd=tmp, env={"PATH": "/usr/bin:/bin", "HOME": tmp,
                                                                  "NO_COLOR": "1"},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
    if proc.returncode == 0:
        return
    text = err.decode("utf-8", "replace")
    m = _BUN_ERROR.search(text)
    if m is None:
        raise ScriptError(f"invalid TypeScript: {text.strip()[-500:]}")
    raise ScriptError(f"invalid TypeScript: {m['message'].strip()}", int(m["line"]), int(m["column"]))


class Bun(Language):
    id = "bun"
    aliases = ("typescript", "ts")
    file_name = "main.ts"

    def __init__(self):
        self._bun: str | None = None

    @property
    def bun(self) -> str | None:
        if self._bun is None:
            self._bun = find_bun()
        return self._bun

    def schema(self, content: str) -> dict[str, Any]:
        schema = main_schema(content)
        if defines_preprocessor(content):
            schema[PREPROCESSOR_KEY] = True
        return schema

    async def lock(self, content: str, cache_dir: Path) -> str | None:
        """Refuse a script bun cannot parse (with line and column), then pin its npm packages."""
        if self.bun is not None:
            await check_syntax(content, self.bun)
        try:
            return await deps_bun.lock_for(content, self.bun, cache_dir)
        except deps_bun.DependencyError as exc:
            raise ScriptError(str(exc)) from None

    async def run(self, ctx: JobContext) -> Outcome:
        bun = self.bun
        if bun is None:
            return Outcome.failure("BunNotFound", "bun is not installed (npm install bun, or set HEADRACE_BUN)")
        order = main_schema(ctx.content)["order"]
        cache_dir = ctx.cache_dir or Settings.from_env().job_cache_dir
        try:
            modules = await deps_bun.node_modules_for(ctx.content, ctx.lock, bun, cache_dir, ctx.log)
        except deps_bun.DependencyError as exc:
            return Outcome.failure("DependencyError", str(exc))
        if modules is not None:
            (ctx.job_dir / "node_modules").symlink_to(modules, target_is_directory=True)
        # --no-install: packages come only from the locked cache, never fetched at run time.
        ctx.env.setdefault("NO_COLOR", "1")
        proc = await run_process([bun, "--no-install", WRAPPER, str(ctx.job_dir), json.dumps(order)], ctx)
        return outcome_from_job_dir(ctx.job_dir, proc.returncode, proc.stderr_tail, "bun")


@hookimpl
def headrace_languages():
    return [Bun()]
