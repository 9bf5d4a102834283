"""Helpers shared by the schedule, error-handler and preprocessor tests (real server, real PostgreSQL)."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import asyncpg

from headrace.core.db import plain_dsn


class Sql:
    """Straight queries on the test's database."""

    def __init__(self, db_url: str):
        self.dsn = plain_dsn(db_url)
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> "Sql":
        import json

        self.conn = await asyncpg.connect(self.dsn)
        for typ in ("json", "jsonb"):
            await self.conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.conn.close()

    async def fetch(self, query: str, *args):
        return await self.conn.fetch(query, *args)

    async def fetchval(self, query: str, *args):
        return await self.conn.fetchval(query, *args)

    async def execute(self, query: str, *args):
        return await self.conn.execute(query, *args)

    async def events(self, trigger_id) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM events WHERE trigger_id = $1 ORDER BY dedup_key", trigger_id)

    async def jobs_of(self, trigger_id) -> list[asyncpg.Record]:
        """Completed jobs of a trigger's events, oldest tick first."""
        return await self.fetch(
            """SELECT c.*, e.dedup_key FROM completed_jobs c JOIN events e ON e.job_id = c.id
               WHERE e.trigger_id = $1 AND e.kind = 'schedule' ORDER BY e.dedup_key""", trigger_id)


async def eventually(check: Callable[[], Awaitable], timeout: float = 15.0, every: float = 0.1):
    """Poll ``check`` until it returns something truthy; return that (fails after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last value: {value!r})")
        await asyncio.sleep(every)


async def create_trigger(api, kind: str, body: dict) -> dict:
    r = await api.post(f"triggers/{kind}/create", body)
    assert r.status == 201, await r.text()
    return await r.json()
