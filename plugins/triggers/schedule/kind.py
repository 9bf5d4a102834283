"""The ``schedule`` trigger kind: a cron expression that enqueues the script on every tick.

One server runs a schedule at a time (the supervisor's lease), and every tick goes through the event
ledger with the dedup key ``tick:<UTC time>``: a tick makes at most one job (or one "skipped" row) even
when two servers run the same schedule for a moment during a lease handover. The last processed tick
is kept in ``triggers.state`` so that a restarted server knows which ticks it missed.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from headrace.core.error_handlers import wants_done_notice
from headrace.core.ledger import SUSPENDED_UNTIL, Event, EventSink
from headrace.core.queue import JobQueue
from headrace.core.triggers import Trigger, TriggerKind

from . import sql
from .config import CONFIG_SCHEMA, ScheduleConfig

log = logging.getLogger(__name__)

UTC = timezone.utc
# overlap=queue holds a tick's job in the queue with this date until the previous job is done.
HELD_UNTIL = datetime(9998, 1, 1, tzinfo=UTC)
# Missed ticks recorded one row each; older ones share one summary row.
RECORD_MAX = 100
IDLE_WAKE_S = 30.0  # re-check the clock at least this often (clock jumps, long sleeps)
HELD_POLL_S = 0.2  # how often overlap=queue looks for a finished previous job


def iso(t: datetime) -> str:
    """Fixed-width UTC text: sorts like the instants it names (dedup keys are ordered by it)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_key(t: datetime) -> str:
    return f"tick:{iso(t)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ScheduleRunner:
    """Runs one schedule trigger until cancelled."""

    def __init__(self, trigger: Trigger, sink: EventSink):
        self.trigger = trigger
        self.sink = sink
        self.pool = sink.pool
        self.config = ScheduleConfig.parse(trigger.config)
        self.schedule = self.config.schedule
        self.held = 0

    # -- state ------------------------------------------------------------------------------
    async def load_last_tick(self) -> datetime | None:
        state = await self.pool.fetchval(sql.GET_STATE, self.trigger.id) or {}
        value = state.get("last_tick")
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    async def save_last_tick(self, t: datetime) -> None:
        await self.sink.save_state(self.trigger.id, {"last_tick": iso(t)})

    # -- loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            if self.config.overlap == "queue":
                await self.cancel_held_if_stopped()

    async def _loop(self) -> None:
        last = await self.load_last_tick()
        if last is None:  # a new schedule starts with the next tick, not with the past
            last = utcnow()
            await self.save_last_tick(last)
        while True:
            if self.config.overlap == "queue":
                await self.release_held()
            now = utcnow()
            paused = self.config.paused_until
            if paused is not None and paused > last:
                if now < paused:
                    await asyncio.sleep(min((paused - now).total_seconds(), IDLE_WAKE_S))
                    continue
                # Ticks during a pause are not due: the pause was asked for.
                last = paused
                await self.save_last_tick(last)
            if self.schedule.next_after(last) <= now:
                last = await self.process_due(last, now)
                await self.save_last_tick(last)
            wait = (self.schedule.next_after(last) - utcnow()).total_seconds()
            cap = HELD_POLL_S if self.held else IDLE_WAKE_S
            await asyncio.sleep(max(0.0, min(wait, cap)))

    async def process_due(self, last: datetime, now: datetime) -> datetime:
        """Fire or skip every tick in (last, now]; returns the newest one."""
        threshold = now - timedelta(seconds=self.config.missed_after_s)
        keep = {"none": 0, "latest": 1, "all": self.config.catch_up_max}[self.config.catch_up]
        newest = last
        if self.schedule.next_after(last) < threshold:
            recent, older, exact = self.schedule.ticks_between(last, threshold - timedelta(microseconds=1),
                                                               keep + RECORD_MAX)
            to_run = recent[max(0, len(recent) - keep):] if keep else []
            to_skip = recent[:len(recent) - len(to_run)]
            if older:
                first_recorded = to_skip[0] if to_skip else (to_run[0] if to_run else threshold)
                await self.record_summary(last, first_recorded, older, exact)
            for t in to_skip:
                await self.record_skip(t, "missed", catch_up=self.config.catch_up)
            for t in to_run:
                await self.fire(t, catch_up=True)
            newest = max([newest, *recent])
        on_time, _, _ = self.schedule.ticks_between(max(newest, threshold - timedelta(microseconds=1)), now,
                                                    10_000)
        for t in on_time:
            await self.fire(t)
        return max([newest, *on_time])

    # -- one tick ---------------------------------------------------------------------------
    def payload(self, t: datetime) -> dict[str, Any]:
        return {"scheduled_for": iso(t), "trigger_path": self.trigger.path, "args": self.config.args}

    async def fire(self, t: datetime, catch_up: bool = False) -> None:
        job_options: dict[str, Any] = {}
        if self.trigger.mode == "enabled" and self.config.overlap != "allow":
            active = await self.pool.fetchval(sql.ACTIVE_JOB, self.trigger.id, HELD_UNTIL)
            if active is not None and self.config.overlap == "skip":
                await self.record_skip(t, "overlap", running_job=str(active))
                return
            if (active is not None or self.held) and self.config.overlap == "queue":
                job_options["scheduled_for"] = HELD_UNTIL
                self.held += 1
        payload = self.payload(t)
        if catch_up:
            payload["catch_up"] = True
        await self.sink.accept(Event(
            workspace_id=self.trigger.workspace_id, source=self.trigger.source, kind="schedule",
            script_path=self.trigger.script_path, payload=payload, args=dict(self.config.args),
            dedup_key=tick_key(t), mode=self.trigger.mode, trigger_id=self.trigger.id,
            created_by=f"schedule:{self.trigger.path}",
            notify_done=wants_done_notice(self.trigger), job_options=job_options,
        ))

    async def record_skip(self, t: datetime, reason: str, **detail: Any) -> None:
        payload = {**self.payload(t), "skip_reason": reason, **detail}
        await self._insert_skipped(payload, tick_key(t))

    async def record_summary(self, after: datetime, before: datetime, count: int, exact: bool) -> None:
        """One row for many missed ticks of a fast schedule (a day of an every-second cron)."""
        first = self.schedule.next_after(after)
        payload = {**self.payload(first), "skip_reason": "missed", "catch_up": self.config.catch_up,
                   "count": count, "count_exact": exact, "first": iso(first), "before": iso(before)}
        await self._insert_skipped(payload, f"missed:{iso(first)}..{iso(before)}")

    async def _insert_skipped(self, payload: dict[str, Any], key: str) -> None:
        t = self.trigger
        await self.pool.execute(sql.INSERT_SKIPPED, uuid.uuid4(), t.workspace_id, t.source, t.id,
                                t.script_path, payload, key)

    async def cancel_held_if_stopped(self) -> None:
        """Held ticks of a schedule that was disabled or deleted will never be released: cancel them.

        (Stopping for any other reason, a restart or a lease moving, leaves them to the next runner.)
        """
        try:
            mode = await self.pool.fetchval(sql.GET_MODE, self.trigger.id)
            if mode not in (None, "disabled"):
                return
            queue = JobQueue(self.pool)
            for row in await self.pool.fetch(sql.HELD_JOBS, self.trigger.id, HELD_UNTIL, SUSPENDED_UNTIL):
                await queue.cancel(self.trigger.workspace_id, row["id"],
                                   f"schedule {self.trigger.path} was {'deleted' if mode is None else 'disabled'}")
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("schedule %s: could not cancel held jobs: %s", self.trigger.path, exc)

    async def release_held(self) -> None:
        row = await self.pool.fetchrow(sql.RELEASE_HELD, self.trigger.id, HELD_UNTIL, SUSPENDED_UNTIL)
        self.held = row["held"]


class ScheduleKind(TriggerKind):
    id = "schedule"
    family = "listener"
    summary = "Run a script on a cron schedule (6 fields with seconds, IANA time zone)"
    config_schema = CONFIG_SCHEMA

    def check_config(self, config: dict[str, Any]) -> None:
        ScheduleConfig.parse(config)

    def args_from_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return dict(event.get("args") or {})

    async def run(self, trigger: Trigger, events: EventSink) -> None:
        await ScheduleRunner(trigger, events).run()
