"""The trigger contract: what a trigger-kind plugin provides, and the generic trigger row it works on.

Two families share one table and one set of API routes:
- ``listener`` kinds (schedule, Kafka, WebSocket, email...) implement ``run(trigger, events)``: one
  cancellable coroutine per trigger, kept alive by :mod:`headrace.core.supervisor` in one server.
- ``http`` kinds (HTTP routes, native push) implement ``route(trigger)`` and ``handle(...)``; the hub
  serves them from one catch-all route and a lookup table that every server refreshes on NOTIFY.
Both hand events to :class:`headrace.core.ledger.EventSink`, never to the queue directly.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from .ledger import EventSink

MODES = ("enabled", "disabled", "suspended", "capture")
CHANNEL_TRIGGERS = "headrace_triggers"  # NOTIFY payload: "<workspace>:<kind>:<trigger id>"


class TriggerConfigError(ValueError):
    """A config that its kind refuses; ``field`` is a dotted path into the config."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Trigger:
    id: uuid.UUID
    workspace_id: str
    kind: str
    path: str
    script_path: str
    config: dict[str, Any]
    mode: str = "enabled"
    error_handler_path: str | None = None
    error_handler_args: dict[str, Any] | None = None
    summary: str = ""
    last_error: str | None = None
    last_error_at: datetime | None = None
    state: dict[str, Any] | None = None
    created_by: str = "admin"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"trigger:{self.id}"


class TriggerKind:
    """Base class for a trigger-kind plugin. Subclass it and return an instance from the hook."""

    id: ClassVar[str] = ""
    family: ClassVar[str] = "listener"  # "listener" or "http"
    summary: ClassVar[str] = ""
    #: JSON Schema of the trigger's ``config``; checked on create and update.
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Dotted paths into ``config`` that hold credentials (e.g. ``"auth.secret"``): stored encrypted,
    #: shown masked, clear only in the trigger that ``run()`` or ``handle()`` receives.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def check_config(self, config: dict[str, Any]) -> None:
        """Checks beyond the JSON Schema; raise TriggerConfigError naming the field."""

    async def prepare_config(self, conn, workspace_id: str, path: str | None,
                             config: dict[str, Any]) -> dict[str, Any]:
        """The config to store, after the schema check, inside the create/update transaction.

        ``path`` is the trigger's current path on update, None on create. Raise
        ``trigger_store.TriggerInputError`` (e.g. status 409 when it clashes with another trigger).
        """
        return config

    def secret_paths(self, config: dict[str, Any]) -> tuple[str, ...]:
        """The secret fields of this config; override when they depend on the config."""
        return self.secret_fields

    def public_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config as API reads show it: secrets masked."""
        from .trigger_secrets import mask

        return mask(self, config)

    def args_from_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """main()'s arguments for an event, when the script has no preprocessor.

        ``event`` is the envelope ``{"kind": ..., <payload>}``. The default passes the whole event
        as one argument named ``event``.
        """
        return {"event": event}

    # -- listener family --------------------------------------------------------------------
    async def run(self, trigger: Trigger, events: "EventSink") -> None:
        """Listen until cancelled; raise to have the supervisor record the error and restart."""
        raise NotImplementedError

    # -- http family ------------------------------------------------------------------------
    def route(self, trigger: Trigger) -> tuple[str, str]:
        """(HTTP method or "*", path pattern under /api/r/) that this trigger answers."""
        raise NotImplementedError

    async def handle(
        self, request: "web.Request", trigger: Trigger, params: dict[str, str], events: "EventSink"
    ) -> "web.StreamResponse":
        """Answer one request that matched ``route()``; ``params`` holds the :name and *rest parts."""
        raise NotImplementedError


class TriggerKindCatalog:
    def __init__(self, kinds: list[TriggerKind]):
        self.by_id: dict[str, TriggerKind] = {}
        for kind in kinds:
            self.by_id.setdefault(kind.id, kind)

    @classmethod
    def from_registry(cls, registry) -> "TriggerKindCatalog":
        return cls([k for group in registry.hook.headrace_trigger_kinds() for k in group])

    def get(self, kind_id: str) -> TriggerKind | None:
        return self.by_id.get(kind_id)

    def names(self) -> list[str]:
        return sorted(self.by_id)

    def of_family(self, family: str) -> list[TriggerKind]:
        return [k for k in self.by_id.values() if k.family == family]
