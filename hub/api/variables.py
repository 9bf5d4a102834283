"""Variables over HTTP, on Windmill's routes and payloads (what PyPI `wmill` and npm `windmill-client` call).

Python's ``set_variable`` probes ``get/{path}`` and needs exactly 404 for a missing variable; TypeScript's
probes ``exists/{path}`` and needs a JSON boolean. ``get_value`` answers a JSON string.
"""
from __future__ import annotations

from contextlib import contextmanager

from aiohttp import web
from headrace.core import variables as store
from headrace.core.secrets import SecretError

from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import DB, SECRETS

routes = web.RouteTableDef()

V = "/api/w/{workspace}/variables"
MAX_LIMIT = 1000


@contextmanager
def api_errors():
    """Store errors as API errors: bad input 400, taken path 409, unreadable secret 500 (server's key)."""
    try:
        yield
    except store.InputError as exc:
        raise ApiError(400, "invalid_field", exc.message, field=exc.field) from None
    except store.PathTaken as exc:
        raise ApiError(409, "conflict", f"{exc.path!r} already exists", field="path") from None
    except SecretError as exc:
        raise ApiError(500, "secret_unreadable", str(exc)) from None


def _missing(path: str) -> ApiError:
    return ApiError(404, "not_found", f"no variable at path {path!r}")


def _limit(request: web.Request) -> int:
    raw = request.query.get("per_page") or request.query.get("limit") or str(MAX_LIMIT)
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", "per_page must be an integer", field="per_page") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid_query", f"per_page must be from 1 to {MAX_LIMIT}", field="per_page")
    return limit


@routes.get(V + "/get_value/{path:.+}")
async def get_value(request: web.Request) -> web.Response:
    p = await require(request, "variables:read")
    path = request.match_info["path"]  # allow_cache is accepted and ignored: values are read fresh
    with api_errors():
        async with request.app[DB].engine.connect() as conn:
            value = await store.get_value(conn, request.app[SECRETS], p.workspace_id, path)
    if value is None:
        raise _missing(path)
    return json_response(value)


@routes.get(V + "/get/{path:.+}")
async def get_variable(request: web.Request) -> web.Response:
    p = await require(request, "variables:read")
    path = request.match_info["path"]
    decrypt = request.query.get("decrypt_secret", "true").lower() not in ("false", "0")
    with api_errors():
        async with request.app[DB].engine.connect() as conn:
            row = await store.get(conn, request.app[SECRETS], p.workspace_id, path, decrypt=decrypt)
    if row is None:
        raise _missing(path)
    return json_response(row)


@routes.get(V + "/exists/{path:.+}")
async def variable_exists(request: web.Request) -> web.Response:
    p = await require(request, "variables:read")
    async with request.app[DB].engine.connect() as conn:
        found = await store.exists(conn, p.workspace_id, request.match_info["path"])
    return json_response(found)


@routes.get(V + "/list")
async def list_variables(request: web.Request) -> web.Response:
    p = await require(request, "variables:read")
    limit = _limit(request)
    async with request.app[DB].engine.connect() as conn:
        rows = await store.list_all(conn, p.workspace_id, path_start=request.query.get("path_start"), limit=limit)
    return json_response(rows)


@routes.post(V + "/create")
async def create_variable(request: web.Request) -> web.Response:
    p = await require(request, "variables:write")
    body = await read_json(request)
    with api_errors():
        path = store.check_path(body.get("path"))
        value = store.check_value(body.get("value"))
        is_secret = store.check_bool(body.get("is_secret", False), "is_secret")
        description = store.check_description(body.get("description"))
        async with request.app[DB].engine.begin() as conn:
            await store.create(conn, request.app[SECRETS], p.workspace_id, path=path, value=value,
                               is_secret=is_secret, description=description, created_by=p.owner)
    return web.Response(text=path, status=201, content_type="text/plain")


@routes.post(V + "/update/{path:.+}")
async def update_variable(request: web.Request) -> web.Response:
    p = await require(request, "variables:write")
    path = request.match_info["path"]  # already_encrypted is accepted and ignored: values arrive in clear
    body = await read_json(request)
    with api_errors():
        value = store.check_value(body["value"]) if body.get("value") is not None else None
        is_secret = store.check_bool(body["is_secret"], "is_secret") if body.get("is_secret") is not None else None
        description = store.check_description(body.get("description")) if "description" in body else None
        new_path = store.check_path(body["path"]) if body.get("path") is not None else None
        async with request.app[DB].engine.begin() as conn:
            found = await store.update(conn, request.app[SECRETS], p.workspace_id, path, value=value,
                                       is_secret=is_secret, description=description, new_path=new_path)
    if not found:
        raise _missing(path)
    return web.Response(text=new_path or path, content_type="text/plain")


async def _delete(request: web.Request) -> web.Response:
    p = await require(request, "variables:write")
    path = request.match_info["path"]
    async with request.app[DB].engine.begin() as conn:
        found = await store.delete(conn, p.workspace_id, path)
    if not found:
        raise _missing(path)
    return web.Response(text=path, content_type="text/plain")


routes.delete(V + "/delete/{path:.+}")(_delete)
routes.post(V + "/delete/{path:.+}")(_delete)


# -- the OpenAPI description of these routes (merged into hub/openapi.py's table) -------------------

def _document() -> None:
    from .. import openapi as doc

    w, path = doc.W + "/variables", {"path": doc.WM_PATH}
    variable = doc.obj(
        ["path", "value", "is_secret", "description"],
        workspace_id=doc.STR, path=doc.STR,
        value=doc.nullable({**doc.STR, "description": "null for a secret in a list"}),
        is_secret=doc.BOOL, description=doc.STR, created_by=doc.STR, created_at=doc.TIME, updated_at=doc.TIME,
        extra_perms=doc.OBJECT, is_oauth=doc.BOOL, is_expired=doc.BOOL, account=doc.nullable(doc.INT),
    )
    text_path = doc.text("the variable's path")
    doc.OPERATIONS.update({
        ("GET", f"{w}/get_value/{{path}}"): doc.Op(
            "A variable's value as a JSON string (a secret decrypted)", "variables", doc.ok(doc.STR),
            scope="variables:read", path_params=path,
            query=[doc.Query("allow_cache", doc.BOOL, "accepted and ignored")]),
        ("GET", f"{w}/get/{{path}}"): doc.Op(
            "One variable (exactly 404 when missing: Python's set_variable probe)", "variables",
            doc.ok(variable), scope="variables:read", path_params=path,
            query=[doc.Query("decrypt_secret", doc.BOOL, "false leaves a secret's value out")]),
        ("GET", f"{w}/exists/{{path}}"): doc.Op(
            "Whether a variable exists (JSON boolean)", "variables", doc.ok(doc.BOOL), scope="variables:read",
            path_params=path),
        ("GET", f"{w}/list"): doc.Op(
            "Every variable (secrets' values left out)", "variables", doc.ok(doc.array(variable)),
            scope="variables:read", query=[doc.Query("path_start", doc.STR),
                                           doc.Query("per_page", doc.int_range(1, MAX_LIMIT))]),
        ("POST", f"{w}/create"): doc.Op(
            "Create a variable", "variables", {**doc.text("the path", 201), **doc.err(409, "path taken")},
            scope="variables:write",
            body=doc.obj(["path", "value"], path=doc.WM_PATH, value=doc.STR, is_secret=doc.BOOL,
                         description=doc.STR),
            query=[doc.Query("already_encrypted", doc.BOOL, "accepted and ignored")]),
        ("POST", f"{w}/update/{{path}}"): doc.Op(
            "Change a variable (partial: {\"value\"} alone works)", "variables",
            {**text_path, **doc.err(409, "new path taken")}, scope="variables:write", path_params=path,
            body=doc.obj([], value=doc.STR, is_secret=doc.BOOL, description=doc.STR, path=doc.WM_PATH),
            query=[doc.Query("already_encrypted", doc.BOOL, "accepted and ignored")]),
        ("POST", f"{w}/delete/{{path}}"): doc.Op(
            "Delete a variable", "variables", text_path, scope="variables:write", path_params=path),
        ("DELETE", f"{w}/delete/{{path}}"): doc.Op(
            "Delete a variable", "variables", text_path, scope="variables:write", path_params=path),
    })


_document()
