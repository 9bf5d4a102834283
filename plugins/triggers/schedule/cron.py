"""Tick computation: a 6-field cron expression (with seconds) in an IANA time zone.

Ticks are UTC instants. The cron fields describe wall-clock times in the zone; this module decides which
instant each wall-clock time means, including across daylight-saving changes:

- *Wall-clock schedules* (the hour field is not ``*``, e.g. ``0 30 2 * * *``): every matching wall time
  fires exactly once. A wall time that happens twice (clocks go back) fires at its first occurrence; a
  wall time that does not exist (clocks go forward) fires shifted forward by the length of the gap
  (02:30 on a spring-forward night in Europe/Berlin fires at 03:30 CEST). Ticks that land on the same
  instant are one tick.
- *Interval schedules* (the hour field is ``*``, e.g. ``*/10 * * * * *``): every instant whose local wall
  time matches fires, so elapsed time stays regular: the repeated hour ticks in both passes, and the
  missing hour has no ticks (no time elapses in it).

The timeline is cut into stretches of constant UTC offset; within one stretch local time is UTC plus a
constant, so croniter (on naive wall times) finds the next match directly.
"""
from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

UTC = timezone.utc
SECOND = timedelta(seconds=1)
# How far to look for the next change of UTC offset; beyond it a stretch is cut arbitrarily.
HORIZON = timedelta(days=400)
SCAN_STEP = timedelta(days=1)
# Past this many ticks, a catch-up scan estimates the count instead of walking every tick.
SCAN_CAP = 5000


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; ``field`` names which one."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise CronError("timezone", f"unknown time zone {name!r}; use an IANA name like Europe/Berlin") from None


class CronSchedule:
    def __init__(self, expr: str, timezone_name: str = "UTC"):
        if not isinstance(expr, str) or len(expr.split()) != 6:
            raise CronError("cron", "cron must have 6 fields: second minute hour day-of-month month day-of-week")
        self.expr = " ".join(expr.split())
        self.tz = zone(timezone_name)
        self.timezone = timezone_name
        try:
            croniter(self.expr, datetime(2000, 1, 1), second_at_beginning=True)
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronError("cron", f"invalid cron expression {expr!r}: {exc}") from None
        self.wall_clock = self.expr.split()[2] != "*"
        self._segment_cache: tuple[datetime, datetime, timedelta, timedelta] | None = None
        try:
            self.next_after(datetime.now(UTC))
        except CroniterBadDateError:
            raise CronError("cron", f"cron expression {expr!r} never matches a date") from None

    # -- offsets ----------------------------------------------------------------------------
    def _offset(self, t: datetime) -> timedelta:
        return t.astimezone(self.tz).utcoffset()

    def _change(self, t: datetime, o: timedelta, step: timedelta) -> datetime | None:
        """The instant nearest to ``t`` in ``step``'s direction where the offset stops being ``o``.

        Going forward: the first instant with another offset; going back: the first instant of ``o``.
        """
        probe = t
        while abs(probe - t) < HORIZON:
            nxt = probe + step
            if self._offset(nxt) != o:
                a, b = (probe, nxt) if step > timedelta(0) else (nxt, probe)
                while b - a > SECOND:  # bisect to the second: offsets change on whole seconds
                    mid = a + (b - a) // 2
                    mid = mid.replace(microsecond=0) if mid.microsecond else mid
                    if (self._offset(mid) == o) == (step > timedelta(0)):
                        a = mid
                    else:
                        b = mid
                return b
            probe = nxt
        return None

    def _segment(self, t: datetime) -> tuple[datetime, datetime, timedelta, timedelta]:
        """(start, end, offset, offset just before start) of the constant-offset stretch holding ``t``."""
        seg = self._segment_cache
        if seg is not None and seg[0] <= t < seg[1]:
            return seg
        o = self._offset(t)
        end = self._change(t, o, SCAN_STEP) or t + HORIZON
        start = self._change(t, o, -SCAN_STEP) or t - HORIZON
        seg = (start, end, o, self._offset(start - SECOND))
        self._segment_cache = seg
        return seg

    # -- ticks ------------------------------------------------------------------------------
    def _next_wall(self, after_wall: datetime) -> datetime:
        return croniter(self.expr, after_wall, second_at_beginning=True).get_next(datetime)

    def _first_in_segment(self, after: datetime, seg) -> datetime | None:
        start, end, o, o_prev = seg
        base = max(after, start - SECOND)
        found = []
        wall_from = (base + o).replace(tzinfo=None)
        if self.wall_clock and o < o_prev:
            # Clocks went back: these wall times already fired in the stretch before.
            wall_from = max(wall_from, (start + o_prev - SECOND).replace(tzinfo=None))
        w = self._next_wall(wall_from)
        if w < (end + o).replace(tzinfo=None):
            found.append(w.replace(tzinfo=UTC) - o)
        if self.wall_clock and o > o_prev:
            # Clocks went forward: wall times in the gap fire shifted forward by the gap.
            w = self._next_wall((base + o_prev).replace(tzinfo=None))
            if w < (start + o).replace(tzinfo=None):
                found.append(w.replace(tzinfo=UTC) - o_prev)
        found = [i for i in found if i > after]
        return min(found) if found else None

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), as a UTC datetime."""
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        t = after.astimezone(UTC)
        bound = t
        while True:
            seg = self._segment(t)
            tick = self._first_in_segment(bound, seg)
            if tick is not None:
                return tick
            t = seg[1]
            bound = max(bound, t - timedelta(microseconds=1))

    def ticks(self, after: datetime, n: int) -> list[datetime]:
        out: list[datetime] = []
        t = after
        for _ in range(n):
            t = self.next_after(t)
            out.append(t)
        return out

    def ticks_between(self, after: datetime, until: datetime, keep: int) -> tuple[list[datetime], int, bool]:
        """Ticks in (after, until]: the most recent ``keep`` of them, how many older ones there were, and
        whether that count is exact (a long gap of a fast schedule is counted by estimate)."""
        recent: deque[datetime] = deque()
        older, scanned, exact = 0, 0, True
        t = after
        first = None
        while True:
            t = self.next_after(t)
            if t > until:
                return list(recent), older, exact
            first = first or t
            recent.append(t)
            if len(recent) > keep:
                recent.popleft()
                older += 1
            scanned += 1
            if scanned == SCAN_CAP:
                # Jump close to ``until`` and estimate the ticks in between from the rate so far.
                interval = (t - first) / (scanned - 1)
                resume = until - interval * (keep + 2)
                if resume > t:
                    older += len(recent) + int((resume - t) / interval)
                    recent.clear()
                    t, exact = resume, False

    def local(self, t: datetime) -> datetime:
        return t.astimezone(self.tz)
