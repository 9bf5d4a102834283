"""The built-in ``schedule`` trigger kind (cron with seconds, time zones, catch-up and overlap policies)."""
from headrace.core.hookspecs import hookimpl

from .kind import ScheduleKind


@hookimpl
def headrace_trigger_kinds():
    return [ScheduleKind()]
