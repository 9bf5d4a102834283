"""The hooks a Headrace plugin may implement.

Every hook is synchronous and returns data (objects or classes); the core awaits whatever async
work those objects do. A plugin never imports another plugin: they meet through core services.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from .languages import Language
    from .resource_types import ResourceType
    from .triggers import TriggerKind

PROJECT = "headrace"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def headrace_languages() -> Iterable["Language"]:
    """Return the script languages this plugin can run.

    Each item is a :class:`headrace.core.languages.Language` instance with a unique ``id`` (Windmill's
    language ids: ``python3``, ``bun``, ``go``, ``bash``) and optional ``aliases``. When two plugins
    offer the same id, the one registered last wins (pluggy calls the last registered first), so a
    third-party plugin can replace a built-in language.
    """


@hookspec
def headrace_trigger_kinds() -> Iterable["TriggerKind"]:
    """Return the trigger kinds this plugin provides.

    Each item is a :class:`headrace.core.triggers.TriggerKind` instance with a unique ``id`` (``http``,
    ``schedule``, ``kafka``...), the JSON Schema of its config, and either ``run()`` (a listener, kept
    running by the supervisor in exactly one server) or ``route()``/``handle()`` (an HTTP trigger served
    under ``/api/r/``). Kinds reach the queue only through the event ledger (:mod:`headrace.core.ledger`).
    When two plugins offer the same id, the one registered last wins (as for languages).
    """


@hookspec
def headrace_resource_types() -> Iterable["ResourceType"]:
    """Return resource types: :class:`headrace.core.resource_types.ResourceType` instances.

    Each has a ``name`` (Windmill's type names where one exists: ``postgresql``, ``smtp``...), the JSON
    Schema of its values and a description. A resource saved with a registered type is checked against
    that schema (a 400 names the field); ``any`` and ``state`` need no registration, and other names are
    refused. ``$var:`` references in string fields are checked as strings, before interpolation.
    """


@hookspec
def headrace_routes() -> Iterable[tuple[str, str, Any]]:
    """Return extra HTTP routes as ``(method, path, handler)`` tuples.

    Paths are mounted under ``/api/plugins/``; handlers are aiohttp coroutines taking a request. A
    route is public unless the handler checks ``request`` auth itself through
    :func:`headrace.hub.auth.require`.
    """


@hookspec
def headrace_startup(app: "web.Application") -> Any:
    """Called once the server's services are up; may return an awaitable the core awaits.

    Use it to start background work tied to the server's lifetime (``app`` carries the core services
    under :mod:`headrace.hub.keys`).
    """
