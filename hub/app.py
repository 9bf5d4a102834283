"""The aiohttp app factory: services are opened and closed by cleanup contexts, in order."""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import AsyncIterator

from aiohttp import web

from headrace.core.config import Settings
from headrace.core.db import Database
from headrace.core.embedded import start_embedded
from headrace.core.error_handlers import ErrorHandlerRunner
from headrace.core.languages import LanguageCatalog
from headrace.core.migrate import migrate
from headrace.core.plugins import PluginRegistry, build_registry
from headrace.core.ledger import EventSink
from headrace.core.queue import JobQueue
from headrace.core.resource_types import ResourceTypeCatalog
from headrace.core.secrets import SecretBox
from headrace.core.supervisor import Supervisor
from headrace.core.triggers import TriggerKindCatalog
from headrace.core.worker import Worker

from . import http_triggers
from . import openapi
from .api import events, jobs, meta, resources, schedules, scripts, tokens, triggers, variables
from .auth import TokenCache
from .http import MAX_BODY, error_response, json_errors
from .keys import DB, KINDS, LANGUAGES, QUEUE, REGISTRY, RESOURCE_TYPES, SECRETS, SETTINGS, SINK, TOKENS, WAITER
from .waiter import JobWaiter

log = logging.getLogger(__name__)

WORKER = web.AppKey("worker", Worker)
SUPERVISOR = web.AppKey("supervisor", Supervisor)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.database_url is None:
        settings.database_url = await asyncio.to_thread(start_embedded, settings.data_dir)
    db = await Database.open(settings.database_url)
    await migrate(db.engine)
    app[DB] = db
    app[SECRETS] = SecretBox(db.engine, SecretBox.load_master_key(settings))
    app[QUEUE] = JobQueue(db.pool)
    waiter = JobWaiter(settings.database_url)
    await waiter.start()
    app[WAITER] = waiter
    yield
    await waiter.close()
    await db.close()


async def _triggers(app: web.Application) -> AsyncIterator[None]:
    sink = EventSink(app[DB].pool)
    sink.start()
    app[SINK] = sink
    supervisor = Supervisor(app[DB].pool, app[KINDS], sink, dsn=app[SETTINGS].database_url,
                            secrets=app[SECRETS])
    app[SUPERVISOR] = supervisor
    task = asyncio.create_task(supervisor.run(), name="trigger-supervisor")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sink.close()


async def _error_handlers(app: web.Application) -> AsyncIterator[None]:
    async with ErrorHandlerRunner(app[DB].pool, app[SINK], dsn=app[SETTINGS].database_url).running():
        yield


def _standalone_worker(slots: int):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        worker = Worker(app[DB].pool, app[LANGUAGES], app[SETTINGS], slots=slots,
                        dsn=app[SETTINGS].database_url, secrets=app[SECRETS])
        app[WORKER] = worker
        task = asyncio.create_task(worker.run(), name="standalone-worker")
        yield
        await worker.drain(app[SETTINGS].shutdown_grace_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return ctx


async def _plugin_startup(app: web.Application) -> None:
    for result in app[REGISTRY].hook.headrace_startup(app=app):
        if inspect.isawaitable(result):
            await result


def _plugin_routes(app: web.Application) -> None:
    for group in app[REGISTRY].hook.headrace_routes():
        for method, path, handler in group:
            app.router.add_route(method, "/api/plugins/" + path.lstrip("/"), handler)


async def _not_found(request: web.Request) -> web.Response:
    return error_response(404, "not_found", f"no route {request.method} {request.path}")


def make_app(settings: Settings, registry: PluginRegistry | None = None, *, worker: bool = True) -> web.Application:
    """The whole server: API, and (standalone) one worker with ``settings.worker_slots`` slots."""
    app = web.Application(middlewares=[json_errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[MAX_BODY] = settings.max_body_bytes
    app[REGISTRY] = registry or build_registry()
    app[LANGUAGES] = LanguageCatalog.from_registry(app[REGISTRY])
    app[KINDS] = TriggerKindCatalog.from_registry(app[REGISTRY])
    app[RESOURCE_TYPES] = ResourceTypeCatalog.from_registry(app[REGISTRY])
    app[TOKENS] = TokenCache()
    for module in (meta, tokens, scripts, jobs, triggers, schedules, events, variables, resources):
        app.add_routes(module.routes)
    _plugin_routes(app)
    openapi.add_route(app)
    app.router.add_route("*", http_triggers.PREFIX + "/{tail:.*}", http_triggers.dispatch)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_triggers)
    app.cleanup_ctx.append(_error_handlers)
    app.cleanup_ctx.append(http_triggers.route_table_ctx)
    app.cleanup_ctx.append(events.retention_ctx)
    if worker:
        app.cleanup_ctx.append(_standalone_worker(settings.worker_slots))
    app.on_startup.append(_plugin_startup)
    return app
