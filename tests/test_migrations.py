"""Alembic migrations: applied by `headrace migrate` and at start-up, idempotent, safe to run concurrently."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from headrace.core.db import make_engine
from headrace.core.migrate import alembic_config, current_revision, migrate
from headrace.core.schema import metadata

ADMIN_PG = os.environ.get("HEADRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def empty_db_url():
    """A database with nothing in it (not cloned from the migrated template)."""
    name = f"hr_empty_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield ADMIN_PG.rpartition("/")[0] + "/" + name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _scalar(url: str, sql: str):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _migrate_process(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "headrace.hub.cli", "migrate"], env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_history_is_linear():
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1


def test_migrate_command_is_idempotent(empty_db_url):
    for _ in range(2):
        proc = _migrate_process(empty_db_url)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "latest schema" in out
    assert asyncio.run(_scalar(empty_db_url, "SELECT version_num FROM alembic_version")) == head()
    assert asyncio.run(_scalar(empty_db_url, "SELECT count(*) FROM alembic_version")) == 1
    # The seed data of the first migration is there exactly once.
    assert asyncio.run(_scalar(empty_db_url, "SELECT count(*) FROM workspaces WHERE id = 'main'")) == 1


def test_two_processes_migrate_an_empty_database_at_once(empty_db_url):
    procs = [_migrate_process(empty_db_url) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err
    assert asyncio.run(_scalar(empty_db_url, "SELECT version_num FROM alembic_version")) == head()
    assert asyncio.run(_scalar(empty_db_url, "SELECT count(*) FROM workspaces WHERE id = 'main'")) == 1


async def test_server_start_up_migrates(empty_db_url, settings):
    from aiohttp.test_utils import TestClient, TestServer

    from headrace.hub.app import make_app

    settings.database_url = empty_db_url
    engine = make_engine(empty_db_url)
    try:
        assert await current_revision(engine) is None
        client = TestClient(TestServer(make_app(settings, worker=False), host=settings.host, port=settings.port))
        await client.start_server()
        try:
            r = await client.get("/api/health")
            assert r.status == 200
        finally:
            await client.close()
        assert await current_revision(engine) == head()
    finally:
        await engine.dispose()


async def test_migrations_create_exactly_the_schema_module(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        await migrate(engine)
        await migrate(engine)  # in-process too: a second run changes nothing
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        assert diff == [], f"core/schema.py and the migrations disagree: {diff}"
    finally:
        await engine.dispose()
