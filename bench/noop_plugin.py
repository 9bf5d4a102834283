"""A bench-only language, "noop": runs in the worker process and succeeds at once.

It measures the queue itself (claim, bookkeeping, completion) without any process start-up. Register it
with ``build_registry(extra=("bench.noop_plugin",))``; it is never part of the default plugins.
"""
from __future__ import annotations

from typing import Any

from headrace.core.hookspecs import hookimpl
from headrace.core.languages import JobContext, Language
from headrace.core.queue import Outcome

_DONE = Outcome(True, None)


class Noop(Language):
    id = "noop"
    isolated = False

    def schema(self, content: str) -> dict[str, Any]:
        return {"type": "object", "properties": {}, "required": [], "order": []}

    async def run(self, ctx: JobContext) -> Outcome:
        return _DONE


@hookimpl
def headrace_languages():
    return [Noop()]
