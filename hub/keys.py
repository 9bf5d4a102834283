"""Typed application state (aiohttp AppKey): the services every handler reaches through the app."""
from __future__ import annotations

from aiohttp import web

from headrace.core.config import Settings
from headrace.core.db import Database
from headrace.core.languages import LanguageCatalog
from headrace.core.plugins import PluginRegistry
from headrace.core.queue import JobQueue
from headrace.core.secrets import SecretBox

from .auth import TokenCache
from .waiter import JobWaiter

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", PluginRegistry)
LANGUAGES = web.AppKey("languages", LanguageCatalog)
DB = web.AppKey("db", Database)
QUEUE = web.AppKey("queue", JobQueue)
WAITER = web.AppKey("waiter", JobWaiter)
TOKENS = web.AppKey("token_cache", TokenCache)
SECRETS = web.AppKey("secrets", SecretBox)

# Triggers (imported late: the trigger modules build on the ones above).
from headrace.core.ledger import EventSink  # noqa: E402
from headrace.core.triggers import TriggerKindCatalog  # noqa: E402

KINDS = web.AppKey("trigger_kinds", TriggerKindCatalog)
SINK = web.AppKey("event_sink", EventSink)

from headrace.core.resource_types import ResourceTypeCatalog  # noqa: E402

RESOURCE_TYPES = web.AppKey("resource_types", ResourceTypeCatalog)
