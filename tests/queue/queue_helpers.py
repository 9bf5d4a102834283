"""Helpers shared by the queue tests (a plain module: tests/ is not a package)."""
from __future__ import annotations

import asyncio
import uuid

async def wait_completed(pool, job_id: uuid.UUID, timeout: float = 15.0) -> dict:
    """The job's completed_jobs row, once it exists (tests never assert timings; this only bounds them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        row = await pool.fetchrow("SELECT * FROM completed_jobs WHERE id = $1", job_id)
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.02)
    state = await pool.fetchrow("SELECT * FROM queue WHERE id = $1", job_id)
    raise AssertionError(f"job {job_id} did not complete in {timeout} s; queue row: {dict(state or {})}")


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll an async predicate until it returns something truthy; returns that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def error_of(row: dict) -> dict:
    return row["result"]["error"]
