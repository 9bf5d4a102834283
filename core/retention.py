"""Event ledger retention: rows older than the configured number of days are deleted.

The server runs :func:`retention_loop`; tests and the CLI call :func:`purge_events` directly.
Rows whose job is still suspended are kept, since they are the only way to resume or cancel it.
"""
from __future__ import annotations

import asyncio
import logging

import asyncpg

from . import ledger_sql as sql

log = logging.getLogger(__name__)

PURGE_BATCH = 5000
INTERVAL_S = 3600.0
FIRST_RUN_AFTER_S = 30.0


async def purge_events(pool: asyncpg.Pool, older_than_days: float, *, batch: int = PURGE_BATCH) -> int:
    """Delete ledger rows received more than ``older_than_days`` ago; returns how many went."""
    if older_than_days <= 0:
        return 0
    seconds = older_than_days * 86400.0
    total = 0
    while True:
        status = await pool.execute(sql.PURGE_EVENTS, seconds, batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def retention_loop(pool: asyncpg.Pool, days: float, *, interval_s: float = INTERVAL_S,
                         first_after_s: float = FIRST_RUN_AFTER_S) -> None:
    """Purge now and then, until cancelled; ``days <= 0`` keeps the ledger forever."""
    if days <= 0:
        return
    await asyncio.sleep(first_after_s)
    while True:
        try:
            n = await purge_events(pool, days)
            if n:
                log.info("event retention: deleted %d ledger rows older than %g days", n, days)
        except (OSError, asyncpg.PostgresError) as exc:  # try again next round
            log.warning("event retention failed: %s", exc)
        await asyncio.sleep(interval_s)
