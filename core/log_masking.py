"""Secret values printed by a job are masked in its log before the log reaches the database.

The worker hands each batch of log chunks to :class:`SecretMasker`. A workspace's secret variables are
read and decrypted lazily and cached; the cache is refreshed when it is older than ``ttl_s`` or when a job
it has not seen before logs (a secret the job read before it printed is then always known). Reloads are
coalesced to one query per workspace per batch, and a workspace with no secrets costs one indexed query
that returns nothing. Within a batch, a job's chunks are joined first, so a secret split across two pipe
reads of one batch is still found; one split across two batches is not.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from . import variables
from .secrets import SecretBox

log = logging.getLogger(__name__)

MASK = "*****"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words and digits
_SEEN_LIMIT = 100_000


class SecretMasker:
    def __init__(self, box: SecretBox, ttl_s: float = 5.0):
        self.box = box
        self.ttl_s = ttl_s
        self._patterns: dict[str, tuple[float, re.Pattern | None]] = {}  # workspace -> (loaded at, pattern)
        self._seen: dict[uuid.UUID, str] = {}  # job id -> workspace, for jobs already masked once

    async def mask(
        self, chunks: list[tuple[uuid.UUID, str]], workspace_of: Callable[[uuid.UUID], str | None],
    ) -> list[tuple[uuid.UUID, str]]:
        """The chunks with every secret of each job's workspace replaced by ``*****`` (one chunk per job)."""
        by_job: dict[uuid.UUID, list[str]] = {}
        for job_id, text in chunks:
            by_job.setdefault(job_id, []).append(text)
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.clear()
        stale: set[str] = set()
        now = time.monotonic()
        jobs: list[tuple[uuid.UUID, str | None]] = []
        for job_id in by_job:
            workspace = self._seen.get(job_id) or workspace_of(job_id)
            jobs.append((job_id, workspace))
            if workspace is None:
                continue
            entry = self._patterns.get(workspace)
            if entry is None or now - entry[0] > self.ttl_s or job_id not in self._seen:
                stale.add(workspace)
            self._seen[job_id] = workspace
        for workspace in stale:
            self._patterns[workspace] = (now, await self._load(workspace))
        out = []
        for job_id, workspace in jobs:
            text = "".join(by_job[job_id])
            pattern = self._patterns.get(workspace, (0.0, None))[1] if workspace else None
            out.append((job_id, pattern.sub(MASK, text) if pattern is not None else text))
        return out

    async def _load(self, workspace: str) -> re.Pattern | None:
        try:
            async with self.box.engine.connect() as conn:
                values = await variables.secret_values(conn, self.box, workspace)
        except Exception as exc:  # noqa: BLE001 (masking must never lose a log; an undecryptable secret is unusable anyway)
            log.warning("cannot load the secrets of workspace %r to mask logs: %s", workspace, exc)
            previous = self._patterns.get(workspace)
            return previous[1] if previous else None
        values = sorted({v for v in values if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        return re.compile("|".join(map(re.escape, values))) if values else None
