"""Fixtures for the queue and worker tests: an asyncpg pool, the queue, scripts, in-process workers."""
from __future__ import annotations

import asyncio
import hashlib

import pytest

from headrace.core.db import make_pool
from headrace.core.languages import LanguageCatalog
from headrace.core.plugins import build_registry
from headrace.core.queue import JobQueue, NewJob
from headrace.core.worker import Worker


@pytest.fixture
async def pool(db_url):
    p = await make_pool(db_url, min_size=1, max_size=6)
    yield p
    await p.close()


@pytest.fixture
def queue(pool) -> JobQueue:
    return JobQueue(pool)


@pytest.fixture(scope="session")
def languages() -> LanguageCatalog:
    return LanguageCatalog.from_registry(build_registry(load_entry_points=False))


class Scripts:
    """Saves script versions straight into the table (the API's own tests cover scripts/create)."""

    def __init__(self, pool, languages: LanguageCatalog):
        self.pool = pool
        self.languages = languages

    async def add(self, content: str, language: str = "bash", path: str = "u/admin/job") -> str:
        script_hash = hashlib.sha256(f"{language}\0{content}".encode()).hexdigest()[:16]
        schema = self.languages.resolve(language).schema(content)
        await self.pool.execute(
            """INSERT INTO scripts (workspace_id, hash, path, language, content, schema, created_by)
               VALUES ('main', $1, $2, $3, $4, $5::jsonb, 'admin') ON CONFLICT DO NOTHING""",
            script_hash, path, language, content, schema,
        )
        return script_hash

    async def job(self, content: str, language: str = "bash", args: dict | None = None, **kw) -> NewJob:
        script_hash = await self.add(content, language)
        return NewJob(workspace_id="main", language=language, args=args or {},
                      script_path="u/admin/job", script_hash=script_hash, **kw)


@pytest.fixture
def scripts(pool, languages) -> Scripts:
    return Scripts(pool, languages)


@pytest.fixture
async def start_worker(pool, languages, settings, db_url):
    """Start in-process Workers (with their NOTIFY listener); all are stopped at teardown."""
    started: list[asyncio.Task] = []

    def start(slots: int = 4, **kw) -> Worker:
        worker = Worker(pool, kw.pop("catalog", languages), settings, slots=slots, dsn=db_url, **kw)
        worker.task = asyncio.create_task(worker.run())
        started.append(worker.task)
        return worker

    yield start
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


