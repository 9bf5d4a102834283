"""The contract between the worker and a language plugin.

A language turns a script's source into a JSON schema of its ``main`` (at save time) and runs one job
(in the worker). The worker prepares the job directory, the argument file and the environment, and
enforces cancel and timeout by killing every process group the job registered.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .queue import Outcome


class ScriptError(ValueError):
    """A script that cannot be saved or run: the message names the problem, with line and column."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "column": self.column}


@dataclass
class JobContext:
    id: uuid.UUID
    workspace_id: str
    script_path: str | None
    script_hash: str | None
    content: str
    args: dict[str, Any]
    # Filled for languages that run a process (Language.isolated): a private directory holding
    # args.json, and the cleared environment the process must get.
    job_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = lambda text: None
    # Process groups started for this job: the worker kills them on cancel, timeout or lost lease.
    process_groups: set[int] = field(default_factory=set)
    # The script version's lock (pinned dependencies, from Language.lock at save time), if any, and
    # the worker's cache directory for installed dependencies and build products.
    lock: str | None = None
    cache_dir: Path | None = None


class Language:
    """Base class for a language plugin; subclass it and return an instance from headrace_languages()."""

    id: str = ""
    aliases: tuple[str, ...] = ()
    #: file name the script is written to inside the job directory
    file_name: str = "main"
    #: False for languages that run in the worker process itself (no job dir, token or env needed)
    isolated: bool = True

    def schema(self, content: str) -> dict[str, Any]:
        """JSON Schema of ``main``'s arguments. Raise ScriptError when the source cannot be parsed."""
        raise NotImplementedError

    async def lock(self, content: str, cache_dir: Path) -> str | None:
        """Pin the script's third-party dependencies; called once per script version, when it is saved.

        Returns the lock text stored with the version (and handed back as ``JobContext.lock``), or None
        when the script needs nothing. Raise ScriptError with the resolver's message when it fails.
        """
        return None

    async def run(self, ctx: JobContext) -> Outcome:
        """Run one job to its outcome. Cancellation arrives as asyncio.CancelledError."""
        raise NotImplementedError


class LanguageCatalog:
    """Languages by id and alias, collected from every plugin."""

    def __init__(self, languages: list[Language]):
        self.by_id: dict[str, Language] = {}
        self.aliases: dict[str, str] = {}
        for lang in languages:
            self.by_id.setdefault(lang.id, lang)
            for alias in lang.aliases:
                self.aliases.setdefault(alias, lang.id)

    @classmethod
    def from_registry(cls, registry) -> "LanguageCatalog":
        return cls([lang for group in registry.hook.headrace_languages() for lang in group])

    def resolve(self, name: str) -> Language | None:
        return self.by_id.get(self.aliases.get(name, name))

    def names(self) -> list[str]:
        return sorted(self.by_id)


def outcome_from_job_dir(job_dir: Path, returncode: int, stderr_tail: str, runtime: str) -> Outcome:
    """Read a finished job's outcome by the job-directory convention every runner follows.

    A wrapper writes ``result.json`` on success, or ``error.json`` (``{name, message, stack}``) when
    ``main`` raised; a process that died without either failed with its exit code.
    """
    result_file = job_dir / "result.json"
    if returncode == 0 and result_file.exists():
        return Outcome(True, json.loads(result_file.read_text()))
    error_file = job_dir / "error.json"
    if error_file.exists():
        error = json.loads(error_file.read_text())
        return Outcome.failure(error.get("name") or "Error", error.get("message", ""), error.get("stack", ""))
    detail = f": {stderr_tail}" if stderr_tail else ""
    return Outcome.failure("ExitCode", f"{runtime} exited with code {returncode}{detail}")
