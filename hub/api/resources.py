"""Resources and state over HTTP, on Windmill's routes and payloads.

``get_value_interpolated`` is what both clients' ``get_resource``/``get_state`` call: a missing resource must
be exactly 404 (TypeScript's ``getState()`` on a first run depends on it). Python probes ``get/{path}``
(404), TypeScript ``exists/{path}`` (JSON boolean).
"""
from __future__ import annotations

from aiohttp import web
from headrace.core import resources as store
from headrace.core.variables import check_description, check_path

from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import DB, RESOURCE_TYPES, SECRETS
from .variables import MAX_LIMIT, _limit, api_errors

routes = web.RouteTableDef()

R = "/api/w/{workspace}/resources"


def _missing(path: str) -> ApiError:
    return ApiError(404, "not_found", f"no resource at path {path!r}")


def known_types(app: web.Application) -> list[str]:
    """Every accepted type name: "any", "state" and those plugins register (headrace_resource_types)."""
    return app[RESOURCE_TYPES].names()


def _value(body: dict):
    if "value" not in body:
        raise ApiError(400, "missing_field", "field 'value' is required (any JSON, null included)", field="value")
    return body["value"]


@routes.get(R + "/get_value_interpolated/{path:.+}")
async def get_value_interpolated(request: web.Request) -> web.Response:
    p = await require(request, "resources:read")
    path = request.match_info["path"]  # job_id and allow_cache are accepted and ignored
    with api_errors():
        async with request.app[DB].engine.connect() as conn:
            try:
                found, value = await store.interpolated(conn, request.app[SECRETS], p.workspace_id, path)
            except store.UnresolvedReference as exc:
                raise ApiError(422, "unresolved_reference", str(exc), field="value", reference=exc.reference) from None
            except store.TooDeep as exc:
                raise ApiError(422, "interpolation_too_deep", str(exc), field="value") from None
    if not found:
        raise _missing(path)
    return json_response(value)


@routes.get(R + "/get_value/{path:.+}")
async def get_value(request: web.Request) -> web.Response:
    p = await require(request, "resources:read")
    path = request.match_info["path"]
    async with request.app[DB].engine.connect() as conn:
        found, value = await store.get_value(conn, p.workspace_id, path)
    if not found:
        raise _missing(path)
    return json_response(value)


@routes.get(R + "/get/{path:.+}")
async def get_resource(request: web.Request) -> web.Response:
    p = await require(request, "resources:read")
    path = request.match_info["path"]
    async with request.app[DB].engine.connect() as conn:
        row = await store.get(conn, p.workspace_id, path)
    if row is None:
        raise _missing(path)
    return json_response(row)


@routes.get(R + "/exists/{path:.+}")
async def resource_exists(request: web.Request) -> web.Response:
    p = await require(request, "resources:read")
    async with request.app[DB].engine.connect() as conn:
        found = await store.exists(conn, p.workspace_id, request.match_info["path"])
    return json_response(found)


@routes.get(R + "/list")
async def list_resources(request: web.Request) -> web.Response:
    p = await require(request, "resources:read")
    limit = _limit(request)
    async with request.app[DB].engine.connect() as conn:
        rows = await store.list_all(conn, p.workspace_id, resource_type=request.query.get("resource_type"),
                                    path_start=request.query.get("path_start"), limit=limit)
    return json_response(rows)


@routes.get(R + "/type/list")
async def list_resource_types(request: web.Request) -> web.Response:
    await require(request, "resources:read")
    types = request.app[RESOURCE_TYPES]
    listed = [{"name": name, "schema": None, "description": "any JSON value"} for name in ("any", "state")]
    listed += [{"name": t.name, "schema": t.schema, "description": t.description}
               for t in sorted(types.by_name.values(), key=lambda t: t.name)]
    return json_response(listed)


@routes.post(R + "/create")
async def create_resource(request: web.Request) -> web.Response:
    p = await require(request, "resources:write")
    body = await read_json(request)
    update_if_exists = request.query.get("update_if_exists", "false").lower() in ("true", "1")
    with api_errors():
        path = check_path(body.get("path"))
        value = _value(body)
        resource_type = store.check_type(body.get("resource_type"), known_types(request.app))
        description = check_description(body.get("description"))
        async with request.app[DB].engine.begin() as conn:
            await store.create(conn, p.workspace_id, path=path, value=value, resource_type=resource_type,
                               description=description, created_by=p.owner, update_if_exists=update_if_exists,
                               types=request.app[RESOURCE_TYPES])
    return web.Response(text=path, status=201, content_type="text/plain")


@routes.post(R + "/update_value/{path:.+}")
async def update_value(request: web.Request) -> web.Response:
    p = await require(request, "resources:write")
    path = request.match_info["path"]
    body = await read_json(request)
    value = _value(body)
    with api_errors():
        async with request.app[DB].engine.begin() as conn:
            found = await store.update(conn, p.workspace_id, path, value=value, types=request.app[RESOURCE_TYPES])
    if not found:
        raise _missing(path)
    return web.Response(text=path, content_type="text/plain")


@routes.post(R + "/update/{path:.+}")
async def update_resource(request: web.Request) -> web.Response:
    p = await require(request, "resources:write")
    path = request.match_info["path"]
    body = await read_json(request)
    with api_errors():
        new_path = check_path(body["path"]) if body.get("path") is not None else None
        resource_type = (store.check_type(body["resource_type"], known_types(request.app))
                         if body.get("resource_type") is not None else None)
        description = check_description(body.get("description")) if "description" in body else None
        async with request.app[DB].engine.begin() as conn:
            found = await store.update(conn, p.workspace_id, path, value=body.get("value", ...),
                                       resource_type=resource_type, description=description, new_path=new_path,
                                       types=request.app[RESOURCE_TYPES])
    if not found:
        raise _missing(path)
    return web.Response(text=new_path or path, content_type="text/plain")


async def _delete(request: web.Request) -> web.Response:
    p = await require(request, "resources:write")
    path = request.match_info["path"]
    async with request.app[DB].engine.begin() as conn:
        found = await store.delete(conn, p.workspace_id, path)
    if not found:
        raise _missing(path)
    return web.Response(text=path, content_type="text/plain")


routes.delete(R + "/delete/{path:.+}")(_delete)
routes.post(R + "/delete/{path:.+}")(_delete)


# -- the OpenAPI description of these routes (merged into hub/openapi.py's table) -------------------

def _document() -> None:
    from .. import openapi as doc

    w, path = doc.W + "/resources", {"path": doc.WM_PATH}
    resource = doc.obj(
        ["path", "value", "resource_type"],
        workspace_id=doc.STR, path=doc.STR, value=doc.ANY, resource_type=doc.STR, description=doc.STR,
        created_by=doc.STR, created_at=doc.TIME, updated_at=doc.TIME, extra_perms=doc.OBJECT, is_oauth=doc.BOOL,
    )
    resource_type = {"type": "string", "description": "\"any\", \"state\", or a type a plugin registered"}
    text_path = doc.text("the resource's path")
    interpolation = doc.err(422, "a $var:/$res: reference names nothing, or references nest deeper than 50")
    doc.OPERATIONS.update({
        ("GET", f"{w}/get_value_interpolated/{{path}}"): doc.Op(
            "A resource's value with $var: and $res: references resolved (404 when missing)", "resources",
            {**doc.ok(doc.ANY), **interpolation}, scope="resources:read", path_params=path,
            query=[doc.Query("job_id", doc.STR, "accepted and ignored"),
                   doc.Query("allow_cache", doc.BOOL, "accepted and ignored")]),
        ("GET", f"{w}/get_value/{{path}}"): doc.Op(
            "A resource's raw value", "resources", doc.ok(doc.ANY), scope="resources:read", path_params=path),
        ("GET", f"{w}/get/{{path}}"): doc.Op(
            "One resource (exactly 404 when missing: Python's set_resource probe)", "resources",
            doc.ok(resource), scope="resources:read", path_params=path),
        ("GET", f"{w}/exists/{{path}}"): doc.Op(
            "Whether a resource exists (JSON boolean)", "resources", doc.ok(doc.BOOL), scope="resources:read",
            path_params=path),
        ("GET", f"{w}/list"): doc.Op(
            "Every resource", "resources", doc.ok(doc.array(resource)), scope="resources:read",
            query=[doc.Query("resource_type", doc.STR, "comma-separated types"), doc.Query("path_start", doc.STR),
                   doc.Query("per_page", doc.int_range(1, MAX_LIMIT))]),
        ("GET", f"{w}/type/list"): doc.Op(
            "Resource types: \"any\", \"state\" and those plugins register, with the JSON Schema of their values",
            "resources", doc.ok(doc.array(doc.obj(["name", "description"], name=doc.STR, schema=doc.ANY,
                                                   description=doc.STR))),
            scope="resources:read"),
        ("POST", f"{w}/create"): doc.Op(
            "Create a resource (a script's state is one of type \"state\")", "resources",
            {**doc.text("the path", 201), **doc.err(409, "path taken")}, scope="resources:write",
            body=doc.obj(["path", "value", "resource_type"], path=doc.WM_PATH, value=doc.ANY,
                         resource_type=resource_type, description=doc.STR),
            query=[doc.Query("update_if_exists", doc.BOOL)]),
        ("POST", f"{w}/update_value/{{path}}"): doc.Op(
            "Replace a resource's value", "resources", text_path, scope="resources:write", path_params=path,
            body=doc.obj(["value"], value=doc.ANY)),
        ("POST", f"{w}/update/{{path}}"): doc.Op(
            "Change a resource (partial)", "resources", {**text_path, **doc.err(409, "new path taken")},
            scope="resources:write", path_params=path,
            body=doc.obj([], path=doc.WM_PATH, value=doc.ANY, resource_type=resource_type, description=doc.STR)),
        ("POST", f"{w}/delete/{{path}}"): doc.Op(
            "Delete a resource", "resources", text_path, scope="resources:write", path_params=path),
        ("DELETE", f"{w}/delete/{{path}}"): doc.Op(
            "Delete a resource", "resources", text_path, scope="resources:write", path_params=path),
    })


_document()
