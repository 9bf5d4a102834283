"""Run-and-wait: callers wait on NOTIFY headrace_done for their job, not by polling."""
from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg

from headrace.core import queue_sql as sql
from headrace.core.db import connect

log = logging.getLogger(__name__)

# Safety net only: if a notification were lost (listener reconnecting), look at the row this often.
RECHECK_S = 5.0


class JobWaiter:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._waiting: dict[uuid.UUID, list[asyncio.Future]] = {}

    async def start(self) -> None:
        self._conn = await connect(self.dsn)
        await self._conn.add_listener(sql.CHANNEL_DONE, self._on_done)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    def _on_done(self, conn, pid, channel, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        for fut in self._waiting.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)

    def register(self, job_id: uuid.UUID) -> asyncio.Future:
        """Call before enqueueing, so that a fast job's notification cannot be missed."""
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(fut)
        return fut

    def forget(self, job_id: uuid.UUID, fut: asyncio.Future) -> None:
        futs = self._waiting.get(job_id)
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._waiting[job_id]

    async def wait(self, job_id: uuid.UUID, fut: asyncio.Future, timeout: float, is_done) -> bool:
        """True once the job completed; ``is_done`` is the coroutine used by the safety-net check."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(RECHECK_S, remaining))
                    return True
                except asyncio.TimeoutError:
                    if await is_done():
                        return True
        finally:
            self.forget(job_id, fut)
