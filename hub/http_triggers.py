"""Serving HTTP-family triggers under /api/r/: one catch-all aiohttp route and our own route table.

aiohttp's router is frozen once the app starts, so routes created at run time live in this table. Every
server loads it at start-up and reloads it on NOTIFY headrace_triggers, so a created, changed or
deleted route takes effect everywhere without a restart.

URLs carry the workspace first: a route ``/hooks/:id`` of workspace ``main`` is served at
``/api/r/main/hooks/:id``, so that workspaces never compete for a path.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from headrace.core import trigger_store
from headrace.core.db import connect
from headrace.core.secrets import SecretError
from headrace.core.trigger_secrets import open_trigger
from headrace.core.triggers import CHANNEL_TRIGGERS, Trigger, TriggerKind

from .http import error_response
from .keys import DB, KINDS, SECRETS, SETTINGS, SINK

log = logging.getLogger(__name__)

PREFIX = "/api/r"
SERVED_MODES = ("enabled", "suspended", "capture")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.~@-]+$")


class RoutePatternError(ValueError):
    pass


def compile_pattern(pattern: str) -> tuple[re.Pattern, int]:
    """``/a/:id/*rest`` -> (regex with named groups, specificity). Raises RoutePatternError."""
    if not pattern.startswith("/"):
        raise RoutePatternError("route path must start with /")
    parts = [p for p in pattern.strip("/").split("/") if p] if pattern != "/" else []
    regex, static = "", 0
    for i, part in enumerate(parts):
        if part.startswith(":"):
            name = part[1:]
            if not name.isidentifier():
                raise RoutePatternError(f"bad parameter name {part!r}")
            regex += rf"/(?P<{name}>[^/]+)"
        elif part.startswith("*"):
            name = part[1:] or "rest"
            if not name.isidentifier():
                raise RoutePatternError(f"bad parameter name {part!r}")
            if i != len(parts) - 1:
                raise RoutePatternError("a *rest segment must come last")
            regex += rf"(?:/(?P<{name}>.*))?"
        else:
            if not _SEGMENT.match(part):
                raise RoutePatternError(f"bad path segment {part!r}")
            regex += "/" + re.escape(part)
            static += 1
    return re.compile(f"^{regex or '/'}/?$" if regex else "^/?$"), static * 100 + len(parts)


@dataclass
class _Entry:
    method: str
    regex: re.Pattern
    specificity: int
    trigger: Trigger
    kind: TriggerKind
    unavailable: str | None = None  # why the trigger cannot serve (its credentials do not decrypt)


class RouteTable:
    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        # trigger id -> (config as stored, config with clear secrets): decrypt only what changed.
        self._opened: dict[uuid.UUID, tuple[dict, dict]] = {}

    async def open(self, triggers: list[Trigger], kinds, box) -> tuple[list[Trigger], dict[uuid.UUID, str]]:
        """The served triggers with their credentials decrypted, and the ids of those that do not decrypt."""
        opened, broken, cache = [], {}, {}
        for t in triggers:
            if t.mode not in SERVED_MODES:
                continue
            hit = self._opened.get(t.id)
            if hit is not None and hit[0] == t.config:
                clear = hit[1]
            else:
                try:
                    clear = (await open_trigger(box, kinds.get(t.kind), t)).config
                except SecretError as exc:
                    log.warning("cannot serve trigger %s: %s", t.path, exc)
                    broken[t.id] = str(exc)
                    clear = t.config
            if t.id not in broken:
                cache[t.id] = (t.config, clear)
            opened.append(dataclasses.replace(t, config=clear))
        self._opened = cache
        return opened, broken

    def load(self, triggers: list[Trigger], kinds, broken: dict[uuid.UUID, str] | None = None) -> None:
        entries = []
        for t in triggers:
            if t.mode not in SERVED_MODES:
                continue
            kind = kinds.get(t.kind)
            try:
                method, pattern = kind.route(t)
                regex, spec = compile_pattern(f"/{t.workspace_id}/{pattern.lstrip('/')}")
            except Exception as exc:  # a bad row must not hide the others
                log.warning("cannot serve trigger %s: %s", t.path, exc)
                continue
            entries.append(_Entry(method.upper(), regex, spec, t, kind, (broken or {}).get(t.id)))
        entries.sort(key=lambda e: -e.specificity)
        self.entries = entries

    def match(self, method: str, path: str) -> tuple[_Entry, dict[str, str]] | None | str:
        """The best entry and its params; "method" when the path matched another method only."""
        path_matched = False
        for e in self.entries:
            m = e.regex.match(path)
            if m is None:
                continue
            if e.method in ("*", method):
                return e, {k: v for k, v in m.groupdict().items() if v is not None}
            path_matched = True
        return "method" if path_matched else None


ROUTES = web.AppKey("http_trigger_routes", RouteTable)


async def reload(app: web.Application) -> None:
    kinds = app[KINDS]
    async with app[DB].engine.connect() as conn:
        triggers = await trigger_store.list_all(conn, [k.id for k in kinds.of_family("http")])
    opened, broken = await app[ROUTES].open(triggers, kinds, app.get(SECRETS))
    app[ROUTES].load(opened, kinds, broken)


async def dispatch(request: web.Request) -> web.StreamResponse:
    tail = "/" + request.match_info["tail"]
    found = request.app[ROUTES].match(request.method, tail)
    if found is None:
        return error_response(404, "no_route", f"no HTTP trigger serves {request.method} {PREFIX}{tail}")
    if found == "method":
        return error_response(405, "method_not_allowed", f"{request.method} is not served at {PREFIX}{tail}")
    entry, params = found
    if entry.unavailable is not None:
        return error_response(503, "trigger_unavailable", f"the trigger {entry.trigger.path!r} cannot serve: "
                              "its credentials do not decrypt (see the server log)")
    return await entry.kind.handle(request, entry.trigger, params, request.app[SINK])


class _Reloader:
    """Keeps the table in step with the database: one reload at a time, coalescing bursts of NOTIFY,
    and a fresh LISTEN connection (plus a full reload) whenever the old one drops."""

    RECONNECT_S = 1.0

    def __init__(self, app: web.Application):
        self.app = app
        self.dirty = asyncio.Event()
        self.lost = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                conn = await connect(self.app[SETTINGS].database_url)
            except Exception as exc:
                log.warning("HTTP routes: cannot listen for changes yet: %s", exc)
                await asyncio.sleep(self.RECONNECT_S)
                continue
            self.lost.clear()
            conn.add_termination_listener(lambda *_: self.lost.set())
            try:
                await conn.add_listener(CHANNEL_TRIGGERS, lambda *_: self.dirty.set())
                self.dirty.set()  # changes made while we were not listening
                await self._reload_until_lost()
            except asyncio.CancelledError:
                await conn.close()
                raise
            except Exception as exc:
                log.warning("HTTP routes: listener failed: %s", exc)
            if not conn.is_closed():
                await conn.close()
            await asyncio.sleep(self.RECONNECT_S)

    async def _reload_until_lost(self) -> None:
        while not self.lost.is_set():
            dirty, lost = asyncio.ensure_future(self.dirty.wait()), asyncio.ensure_future(self.lost.wait())
            await asyncio.wait({dirty, lost}, return_when=asyncio.FIRST_COMPLETED)
            dirty.cancel(), lost.cancel()
            if self.dirty.is_set():
                self.dirty.clear()  # cleared before reading: a change during the read reloads again
                try:
                    await reload(self.app)
                except Exception as exc:
                    log.warning("HTTP routes: reload failed, retrying: %s", exc)
                    self.dirty.set()
                    await asyncio.sleep(self.RECONNECT_S)


async def route_table_ctx(app: web.Application) -> AsyncIterator[None]:
    app[ROUTES] = RouteTable()
    if not app[KINDS].of_family("http"):
        yield
        return
    await reload(app)
    task = asyncio.create_task(_Reloader(app).run(), name="http-route-table")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
