"""The OpenAPI document at /api/openapi.json: served without a token, valid, and complete.

Completeness is checked against the live router with aiohttp's own dispatcher: every route of the app
(except the catch-all 404) must be reached by some documented operation, and no documented operation
may fall through to the catch-all 404.
"""
from __future__ import annotations

import re

from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate

from headrace.core.hookspecs import hookimpl
from headrace.core.plugins import build_registry
from headrace.core.triggers import TriggerKind
from headrace.hub.app import _not_found, make_app
from headrace.hub.keys import KINDS
from headrace.hub.openapi import build_document, route_key

METHODS = ("get", "post", "put", "patch", "delete")


def sample_url(path: str) -> str:
    """A concrete URL for a documented path: each {param} becomes a plain segment."""
    return re.sub(r"{[^}]+}", "x", path)


async def resolve(app, method: str, url: str):
    return (await app.router.resolve(make_mocked_request(method.upper(), url, app=app))).route


async def fetch_document(server) -> dict:
    r = await server.get("/api/openapi.json")  # no Authorization header
    assert r.status == 200, await r.text()
    assert r.content_type == "application/json"
    return await r.json()


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


async def test_served_without_token_and_valid(server):
    doc = await fetch_document(server)
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema

    import schemathesis

    schema = schemathesis.openapi.from_dict(doc)
    loaded = list(schema.get_all_operations())
    errors = [r.err() for r in loaded if not hasattr(r, "ok")]
    assert not errors, errors
    assert len(loaded) == sum(1 for _ in operations(doc))


async def test_every_router_route_is_documented(server):
    app = server.app
    doc = await fetch_document(server)
    reached = set()
    for method, path, _ in operations(doc):
        route = await resolve(app, method, sample_url(path))
        reached.add(route)
    missing = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route_key(route) is not None and route.handler is not _not_found and route not in reached
    ]
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    # And the router does hold more than a handful of routes, so the loop above checked something.
    assert len(reached) > 30


async def test_no_documented_operation_is_stale(server):
    app = server.app
    doc = await fetch_document(server)
    stale = []
    for method, path, _ in operations(doc):
        route = await resolve(app, method, sample_url(path))
        if route.handler is _not_found:
            stale.append(f"{method.upper()} {path}")
    assert not stale, f"documented but not served: {stale}"


async def test_errors_share_error_body_and_tokens_are_declared(server):
    doc = await fetch_document(server)
    body = doc["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"]
    assert set(body["properties"]["error"]["required"]) == {"code", "message"}
    for method, path, op in operations(doc):
        for status, resp in op["responses"].items():
            if status.startswith(("4", "5")) and "content" in resp and path != "/api/health":
                assert resp["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}, (
                    method, path, status)
        assert "404" in op["responses"], (method, path)
        if op["security"]:
            assert "401" in op["responses"] and "403" in op["responses"], (method, path)
    for open_path in ("/api/version", "/api/health", "/api/openapi.json"):
        assert doc["paths"][open_path]["get"]["security"] == []


async def test_windmill_shapes_are_documented(server):
    doc = await fetch_document(server)
    w = "/api/w/{workspace}"
    run = doc["paths"][f"{w}/jobs/run/p/{{path}}"]["post"]
    assert list(run["responses"]["201"]["content"]) == ["text/plain"]
    assert run["responses"]["201"]["content"]["text/plain"]["schema"]["format"] == "uuid"
    assert f"{w}/jobs/run/h/{{hash}}" in doc["paths"]
    create = doc["paths"][f"{w}/scripts/create"]["post"]
    assert list(create["responses"]["201"]["content"]) == ["text/plain"]
    result_maybe = doc["paths"][f"{w}/jobs_u/completed/get_result_maybe/{{id}}"]["get"]
    assert result_maybe["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResultMaybe"}
    # Path parameters that hold slashes are plain {path} parameters.
    params = {p["name"] for p in doc["paths"][f"{w}/scripts/get/p/{{path}}"]["get"]["parameters"]}
    assert params == {"workspace", "path"}


class _KindPlugin:
    class Mailbox(TriggerKind):
        id = "openapi_mailbox"
        summary = "a kind only this test knows"
        config_schema = {"type": "object", "required": ["folder"],
                         "properties": {"folder": {"type": "string", "minLength": 1}}}

    @hookimpl
    def headrace_trigger_kinds(self):
        return [self.Mailbox()]


def test_trigger_kinds_document_their_config_schema(settings):
    registry = build_registry()
    registry.pm.register(_KindPlugin(), name="openapi-test-kind")
    app = make_app(settings, registry, worker=False)
    doc = build_document(app)
    assert "openapi_mailbox" in app[KINDS].by_id
    for kind in app[KINDS].by_id.values():
        for path in (f"/api/w/{{workspace}}/triggers/{kind.id}/create",
                     f"/api/w/{{workspace}}/triggers/{kind.id}/update/{{path}}"):
            body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            expected = {k: v for k, v in kind.config_schema.items() if k != "$schema"}
            assert body["properties"]["config"] == (expected or {"type": "object"}), path
    validate(doc)
