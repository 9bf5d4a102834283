"""A schedule trigger's config: its JSON Schema and the parsed, checked form."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from headrace.core.triggers import TriggerConfigError

from .cron import CronError, CronSchedule

CATCH_UP = ("none", "latest", "all")
OVERLAP = ("allow", "skip", "queue")

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cron"],
    "additionalProperties": False,
    "properties": {
        "cron": {"type": "string", "description": "6 fields: second minute hour day-of-month month day-of-week"},
        "timezone": {"type": "string", "default": "UTC", "description": "IANA time zone, e.g. Europe/Berlin"},
        "args": {"type": "object", "default": {}, "description": "main()'s arguments on every tick"},
        "catch_up": {"enum": list(CATCH_UP), "default": "none",
                     "description": "ticks missed while no server ran the schedule: none, latest, or all"},
        "catch_up_max": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10,
                         "description": "with catch_up=all, run at most this many missed ticks (the latest)"},
        "overlap": {"enum": list(OVERLAP), "default": "allow",
                    "description": "a tick while the previous job still runs: allow, skip, or queue"},
        "paused_until": {"type": ["string", "null"], "format": "date-time",
                         "description": "no ticks fire before this time (ISO 8601 with offset)"},
        "missed_after_s": {"type": "number", "minimum": 0, "maximum": 86400, "default": 30,
                           "description": "a tick this late counts as missed (catch_up applies)"},
    },
}


@dataclass
class ScheduleConfig:
    schedule: CronSchedule
    args: dict[str, Any] = field(default_factory=dict)
    catch_up: str = "none"
    catch_up_max: int = 10
    overlap: str = "allow"
    paused_until: datetime | None = None
    missed_after_s: float = 30.0

    @classmethod
    def parse(cls, config: dict[str, Any]) -> "ScheduleConfig":
        """Parse a config the JSON Schema accepted; raise TriggerConfigError naming the field."""
        try:
            schedule = CronSchedule(config["cron"], config.get("timezone") or "UTC")
        except CronError as exc:
            raise TriggerConfigError(exc.field, exc.message) from None
        return cls(
            schedule=schedule,
            args=dict(config.get("args") or {}),
            catch_up=config.get("catch_up", "none"),
            catch_up_max=int(config.get("catch_up_max", 10)),
            overlap=config.get("overlap", "allow"),
            paused_until=parse_instant(config.get("paused_until"), "paused_until"),
            missed_after_s=float(config.get("missed_after_s", 30)),
        )


def parse_instant(value: Any, field_name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise TriggerConfigError(field_name, f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise TriggerConfigError(field_name, f"{value!r} needs a UTC offset, e.g. 2030-01-01T00:00:00Z")
    return parsed
