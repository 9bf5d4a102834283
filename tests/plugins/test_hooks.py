"""One test per hook in headrace.core.hookspecs: a plugin object implements it, a real server uses it."""
from __future__ import annotations

import inspect

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from headrace.core import hookspecs
from headrace.core.hookspecs import hookimpl
from headrace.core.languages import Language
from headrace.core.plugins import build_registry
from headrace.core.queue import Outcome
from headrace.hub.app import make_app
from headrace.hub.auth import require
from headrace.hub.http import json_response
from headrace.hub.keys import DB

TESTED_HOOKS = {"headrace_languages", "headrace_routes", "headrace_startup", "headrace_trigger_kinds", "headrace_resource_types"}


def _registry(*plugins):
    reg = build_registry(load_entry_points=False)
    for i, plugin in enumerate(plugins):
        reg.pm.register(plugin, name=f"test-plugin-{i}")
    return reg


@pytest.fixture
async def start(settings):
    """Start a real server (API + worker) whose registry also holds the given plugin objects."""
    clients = []

    async def start_(*plugins) -> TestClient:
        app = make_app(settings, _registry(*plugins))
        client = TestClient(TestServer(app, host=settings.host, port=settings.port))
        await client.start_server()
        clients.append(client)
        return client

    yield start_
    for client in clients:
        await client.close()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_every_hookspec_has_a_test():
    specs = {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "headrace_spec")}
    assert specs, "no hookspecs found"
    assert specs <= TESTED_HOOKS, f"hooks without a test_hook_<name>: {sorted(specs - TESTED_HOOKS)}"
    for name in TESTED_HOOKS & specs:
        assert f"test_hook_{name}" in globals(), name
        assert getattr(hookspecs, name).__doc__, f"{name} has no contract docstring"
    # ...and a heading in the plugin documentation.
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    for name in specs:
        assert f"\n### {name}(" in docs, f"docs/plugins.md has no heading for {name}"


class Shout(Language):
    """A language that runs inside the worker: the result is the script's text, upper-cased, + args."""

    id = "shout"
    aliases = ("loud",)
    isolated = False

    def schema(self, content):
        return {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}

    async def run(self, ctx):
        return Outcome(True, f"{ctx.content.upper()} {ctx.args['who'].upper()}")


class LanguagePlugin:
    @hookimpl
    def headrace_languages(self):
        return [Shout()]


async def test_hook_headrace_languages(start, admin_token):
    client = await start(LanguagePlugin())
    h = auth(admin_token)
    r = await client.post("/api/w/main/scripts/create", headers=h,
                          json={"path": "u/admin/shout", "content": "hello", "language": "loud"})
    assert r.status == 201, await r.text()
    r = await client.post("/api/w/main/jobs/run_wait_result/p/u/admin/shout", headers=h, json={"who": "ada"})
    assert (r.status, await r.json()) == (200, "HELLO ADA")
    # The plugin's schema is enforced like any built-in language's.
    r = await client.post("/api/w/main/jobs/run_wait_result/p/u/admin/shout", headers=h, json={})
    assert r.status == 400 and (await r.json())["error"]["field"] == "who"
    # The language is offered next to the built-in ones.
    r = await client.post("/api/w/main/scripts/create", headers=h,
                          json={"path": "u/admin/x", "content": "x", "language": "cobol"})
    assert r.status == 400
    assert {"shout", "python3", "bash"} <= set((await r.json())["error"]["available"])


async def public_ping(request):
    return json_response({"pong": request.match_info["name"]})


async def private_ping(request):
    p = await require(request, "scripts:read")
    return json_response({"workspace": p.workspace_id})


class RoutePlugin:
    @hookimpl
    def headrace_routes(self):
        return [("GET", "/ping/{name}", public_ping), ("POST", "private", private_ping)]


async def test_hook_headrace_routes(start, token_for, admin_token):
    client = await start(RoutePlugin())
    r = await client.get("/api/plugins/ping/zed")
    assert (r.status, await r.json()) == (200, {"pong": "zed"})
    r = await client.post("/api/plugins/private")
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    r = await client.post("/api/plugins/private", headers=auth(admin_token))
    assert (r.status, await r.json()) == (200, {"workspace": "main"})
    weak = await token_for(["jobs:run"])
    r = await client.post("/api/plugins/private", headers=auth(weak))
    assert r.status == 403
    # A plugin route never shadows the core's: only /api/plugins/ is theirs.
    r = await client.get("/ping/zed")
    assert r.status == 404


class StartupPlugin:
    def __init__(self):
        self.seen = []

    @hookimpl
    def headrace_startup(self, app):
        async def remember_workspaces():
            # The core's services are up: the database is migrated and reachable.
            async with app[DB].engine.connect() as conn:
                self.seen.append(await conn.scalar(sa.text("SELECT string_agg(id, ',') FROM workspaces")))
        return remember_workspaces()


class SyncStartupPlugin:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def headrace_startup(self, app):
        self.calls += 1  # returns None: nothing to await


async def test_hook_headrace_startup(start):
    async_plugin, sync_plugin = StartupPlugin(), SyncStartupPlugin()
    client = await start(async_plugin, sync_plugin)
    # Awaited before the server accepts requests.
    assert async_plugin.seen == ["main"]
    assert sync_plugin.calls == 1
    r = await client.get("/api/health")
    assert r.status == 200




def _tick_kind():
    import asyncio

    from headrace.core.ledger import Event
    from headrace.core.triggers import TriggerKind

    class Tick(TriggerKind):
        id = "tick"
        family = "listener"
        summary = "emits one event when it starts"
        config_schema = {
            "type": "object",
            "properties": {"greeting": {"type": "string"}},
            "required": ["greeting"],
            "additionalProperties": False,
        }

        async def run(self, trigger, events):
            await events.accept(Event(
                workspace_id=trigger.workspace_id, source=trigger.source, kind=self.id,
                script_path=trigger.script_path, payload={"greeting": trigger.config["greeting"]},
                args={"greeting": trigger.config["greeting"]}, trigger_id=trigger.id, dedup_key="first",
            ))
            await asyncio.Event().wait()  # a listener runs until the supervisor cancels it

    return Tick()


class TriggerKindPlugin:
    @hookimpl
    def headrace_trigger_kinds(self):
        return [_tick_kind()]


async def test_hook_headrace_trigger_kinds(start, admin_token):
    import asyncio

    client = await start(TriggerKindPlugin())
    h = auth(admin_token)
    r = await client.get("/api/w/main/triggers/kinds", headers=h)
    kinds = {k["id"]: k for k in await r.json()}
    assert kinds["tick"]["family"] == "listener" and kinds["tick"]["config_schema"]["required"] == ["greeting"]

    r = await client.post("/api/w/main/scripts/create", headers=h, json={
        "path": "u/admin/on_tick", "language": "python3",
        "content": "def main(greeting: str):\n    return greeting.upper()\n"})
    assert r.status == 201
    # The kind's JSON Schema checks the config.
    r = await client.post("/api/w/main/triggers/tick/create", headers=h, json={
        "path": "u/admin/tick", "script_path": "u/admin/on_tick", "config": {"greeting": 5}})
    assert r.status == 400 and "greeting" in (await r.json())["error"]["field"]
    r = await client.post("/api/w/main/triggers/tick/create", headers=h, json={
        "path": "u/admin/tick", "script_path": "u/admin/on_tick", "config": {"greeting": "tick tock"}})
    assert r.status == 201, await r.text()

    # The supervisor runs the listener; its event becomes a job that completes.
    for _ in range(200):
        r = await client.get("/api/w/main/jobs/list?script_path_exact=u/admin/on_tick", headers=h)
        jobs = await r.json()
        if jobs and jobs[0].get("type") == "CompletedJob":
            break
        await asyncio.sleep(0.05)
    assert len(jobs) == 1, jobs
    r = await client.get(f"/api/w/main/jobs_u/completed/get_result/{jobs[0]['id']}", headers=h)
    assert (r.status, await r.json()) == (200, "TICK TOCK")


class FakePython(Language):
    id = "python3"
    isolated = False

    def schema(self, content):
        return {"type": "object"}

    async def run(self, ctx):
        return Outcome(True, "not really python")


class OverridePlugin:
    @hookimpl
    def headrace_languages(self):
        return [FakePython()]


async def test_hook_headrace_languages_later_plugin_replaces_a_builtin(start, admin_token):
    # As documented in the hookspec: the plugin registered last wins an id.
    client = await start(OverridePlugin())
    h = auth(admin_token)
    r = await client.post("/api/w/main/scripts/create", headers=h,
                          json={"path": "u/admin/p", "content": "def main(:", "language": "python3"})
    assert r.status == 201
    r = await client.post("/api/w/main/jobs/run_wait_result/p/u/admin/p", headers=h, json={})
    assert (r.status, await r.json()) == (200, "not really python")


class WeatherTypePlugin:
    @hookimpl
    def headrace_resource_types(self):
        from headrace.core.resource_types import ResourceType

        return [ResourceType("weather_api", {"type": "object", "required": ["api_key"],
                                             "properties": {"api_key": {"type": "string"}, "units": {"enum": ["metric", "imperial"]}}},
                             "A weather service account")]


async def test_hook_headrace_resource_types(start, admin_token):
    client = await start(WeatherTypePlugin())
    h = auth(admin_token)
    r = await client.get("/api/w/main/resources/type/list", headers=h)
    listed = {t["name"]: t for t in await r.json()}
    assert {"any", "state", "postgresql", "weather_api"} <= set(listed)
    assert listed["weather_api"]["description"] == "A weather service account"
    # A value of the plugin's type is checked against its schema, naming the field...
    r = await client.post("/api/w/main/resources/create", headers=h, json={
        "path": "u/admin/w", "resource_type": "weather_api", "value": {"units": "kelvin", "api_key": "k"}})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value.units"
    r = await client.post("/api/w/main/resources/create", headers=h, json={
        "path": "u/admin/w", "resource_type": "weather_api", "value": {"units": "metric"}})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value.api_key"
    # ...and accepted when it fits, including later value updates.
    r = await client.post("/api/w/main/resources/create", headers=h, json={
        "path": "u/admin/w", "resource_type": "weather_api", "value": {"api_key": "$var:u/admin/key"}})
    assert r.status == 201, await r.text()
    r = await client.post("/api/w/main/resources/update_value/u/admin/w", headers=h, json={"value": {"units": "metric"}})
    assert r.status == 400 and (await r.json())["error"]["field"] == "value.api_key"
    r = await client.post("/api/w/main/resources/update_value/u/admin/w", headers=h,
                          json={"value": {"api_key": "k2", "units": "imperial"}})
    assert r.status == 200
    r = await client.get("/api/w/main/resources/get_value/u/admin/w", headers=h)
    assert await r.json() == {"api_key": "k2", "units": "imperial"}

