"""Keeps every enabled listener trigger running in exactly one server.

Each server's supervisor scans the listener triggers (on start, on NOTIFY headrace_triggers, and every
few seconds), takes the lease of those nobody holds, and runs the kind's ``run()`` for them. A run that
raises is recorded on the row (``last_error``) and restarted with exponential backoff. Leases are renewed
while held; a server that dies loses its leases when they expire and another server takes over.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import traceback
import uuid
from dataclasses import dataclass

import asyncpg

from . import ledger_sql as sql
from .ledger import EventSink
from .secrets import SecretBox
from .trigger_secrets import open_trigger
from .triggers import CHANNEL_TRIGGERS, Trigger, TriggerKindCatalog

log = logging.getLogger(__name__)

LISTENING_MODES = ("enabled", "suspended", "capture")
BACKOFF_MAX_S = 60.0

LIST_LISTENERS = """
SELECT * FROM triggers WHERE kind = ANY($1::text[]) AND mode = ANY($2::text[])
"""


@dataclass
class _Run:
    trigger: Trigger
    task: asyncio.Task


class Supervisor:
    def __init__(self, pool: asyncpg.Pool, kinds: TriggerKindCatalog, sink: EventSink, *,
                 dsn: str | None = None, lease_s: float = 15.0, scan_s: float = 5.0,
                 owner: str | None = None, secrets: SecretBox | None = None):
        self.pool = pool
        self.secrets = secrets  # opens the triggers' sealed credentials for run()
        self.kinds = kinds
        self.sink = sink
        self.dsn = dsn
        self.lease_s = lease_s
        self.scan_s = scan_s
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.runs: dict[uuid.UUID, _Run] = {}
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = None
        if self.dsn is not None:
            from .db import connect

            listener = await connect(self.dsn)
            await listener.add_listener(CHANNEL_TRIGGERS, lambda *a: self._wake.set())
        try:
            while True:
                self._wake.clear()
                try:
                    await self.reconcile()
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("trigger supervisor: %s", exc)
                try:
                    await asyncio.wait_for(self._wake.wait(), self.scan_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.stop_all()
            if listener is not None:
                await listener.close()

    async def reconcile(self) -> None:
        kinds = [k.id for k in self.kinds.of_family("listener")]
        if not kinds:
            return
        rows = await self.pool.fetch(LIST_LISTENERS, kinds, list(LISTENING_MODES))
        from .trigger_store import row_to_trigger

        wanted = {r["id"]: row_to_trigger(r) for r in rows}
        # Stop runs whose trigger is gone, disabled or changed.
        for trigger_id, run in list(self.runs.items()):
            fresh = wanted.get(trigger_id)
            if fresh is None or fresh.updated_at != run.trigger.updated_at or fresh.mode != run.trigger.mode:
                await self._stop(trigger_id)
        # Keep the leases we hold; forget runs whose lease another server took.
        if self.runs:
            kept = {r["id"] for r in await self.pool.fetch(
                sql.RENEW_LEASES, list(self.runs), self.owner, self.lease_s)}
            for trigger_id in set(self.runs) - kept:
                log.warning("lost the lease of trigger %s", trigger_id)
                await self._stop(trigger_id, release=False)
        for trigger_id, trigger in wanted.items():
            if trigger_id in self.runs:
                continue
            got = await self.pool.fetchval(sql.ACQUIRE_LEASE, trigger_id, self.owner, self.lease_s)
            if got is not None:
                task = asyncio.create_task(self._supervise(trigger), name=f"trigger-{trigger.path}")
                self.runs[trigger_id] = _Run(trigger, task)

    async def _supervise(self, trigger: Trigger) -> None:
        kind = self.kinds.get(trigger.kind)
        delay = 1.0
        while True:
            try:
                # Opened here, not in reconcile(): a secret that does not decrypt is recorded and retried.
                await kind.run(await open_trigger(self.secrets, kind, trigger), self.sink)
                error = f"{trigger.kind} listener returned; restarting"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("trigger %s failed: %s\n%s", trigger.path, error, traceback.format_exc())
            try:
                await self.pool.execute(sql.RECORD_TRIGGER_ERROR, trigger.id, error)
            except (OSError, asyncpg.PostgresError):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _stop(self, trigger_id: uuid.UUID, release: bool = True) -> None:
        run = self.runs.pop(trigger_id, None)
        if run is None:
            return
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
        if release:
            await self.pool.execute(sql.RELEASE_LEASES, [trigger_id], self.owner)

    async def stop_all(self) -> None:
        ids = list(self.runs)
        for trigger_id in ids:
            await self._stop(trigger_id, release=False)
        if ids:
            try:
                await self.pool.execute(sql.RELEASE_LEASES, ids, self.owner)
            except (OSError, asyncpg.PostgresError):
                pass
