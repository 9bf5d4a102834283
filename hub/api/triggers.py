"""One set of routes for triggers of every kind: /api/w/{w}/triggers/{kind}/create|list|get|update|delete|setmode."""
from __future__ import annotations

from aiohttp import web

from headrace.core import trigger_store as store
from headrace.core.tokens import Principal
from headrace.core.triggers import MODES, Trigger, TriggerKind

from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import DB, KINDS, SECRETS

routes = web.RouteTableDef()


def trigger_json(t: Trigger, kind: TriggerKind | None = None) -> dict:
    config = kind.public_config(t.config) if kind is not None else t.config  # secrets masked
    return {
        "id": t.id, "path": t.path, "kind": t.kind, "script_path": t.script_path, "config": config,
        "mode": t.mode, "enabled": t.mode == "enabled", "error_handler_path": t.error_handler_path,
        "error_handler_args": t.error_handler_args, "summary": t.summary, "last_error": t.last_error,
        "last_error_at": t.last_error_at, "created_by": t.created_by, "created_at": t.created_at,
        "updated_at": t.updated_at, "server_id": t.extra.get("lease_owner"),
    }


def kind_of(request: web.Request) -> TriggerKind:
    kinds = request.app[KINDS]
    kind = kinds.get(request.match_info["kind"])
    if kind is None:
        raise ApiError(404, "unknown_trigger_kind",
                       f"no trigger kind {request.match_info['kind']!r}; available: {', '.join(kinds.names())}",
                       available=kinds.names())
    return kind


def _input_error(exc: store.TriggerInputError) -> ApiError:
    code = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid_trigger")
    return ApiError(exc.status, code, exc.message, field=exc.field)


@routes.get("/api/w/{workspace}/triggers/kinds")
async def list_kinds(request: web.Request) -> web.Response:
    await require(request, "triggers:read")
    return json_response([
        {"id": k.id, "family": k.family, "summary": k.summary, "config_schema": k.config_schema}
        for k in request.app[KINDS].by_id.values()
    ])


@routes.post("/api/w/{workspace}/triggers/{kind}/create")
async def create_trigger(request: web.Request) -> web.Response:
    p = await require(request, "triggers:write")
    kind = kind_of(request)
    body = await read_json(request)
    try:
        async with request.app[DB].engine.begin() as conn:
            t = await store.create(conn, kind, p.workspace_id, body, p.owner, secrets=request.app[SECRETS])
    except store.TriggerInputError as exc:
        raise _input_error(exc) from None
    return json_response(trigger_json(t, kind), status=201)


@routes.get("/api/w/{workspace}/triggers/{kind}/list")
async def list_triggers(request: web.Request) -> web.Response:
    p = await require(request, "triggers:read")
    kind = kind_of(request)
    async with request.app[DB].engine.connect() as conn:
        items = await store.list_(conn, p.workspace_id, kind.id, request.query.get("script_path"))
    return json_response([trigger_json(t, kind) for t in items])


async def find_trigger(request: web.Request, scope: str) -> tuple[Principal, TriggerKind, Trigger]:
    """The caller, the kind and the trigger named by the URL's {kind} and {path} (401/403/404 otherwise)."""
    p = await require(request, scope)
    kind = kind_of(request)
    async with request.app[DB].engine.connect() as conn:
        t = await store.get(conn, p.workspace_id, kind.id, request.match_info["path"])
    if t is None:
        raise ApiError(404, "not_found", f"no {kind.id} trigger at {request.match_info['path']!r}")
    return p, kind, t


@routes.get("/api/w/{workspace}/triggers/{kind}/get/{path:.+}")
async def get_trigger(request: web.Request) -> web.Response:
    _, kind, t = await find_trigger(request, "triggers:read")
    return json_response(trigger_json(t, kind))


@routes.get("/api/w/{workspace}/triggers/{kind}/exists/{path:.+}")
async def trigger_exists(request: web.Request) -> web.Response:
    p = await require(request, "triggers:read")
    kind = kind_of(request)
    async with request.app[DB].engine.connect() as conn:
        t = await store.get(conn, p.workspace_id, kind.id, request.match_info["path"])
    return json_response(t is not None)


async def _update(request: web.Request, body: dict) -> web.Response:
    p = await require(request, "triggers:write")
    kind = kind_of(request)
    try:
        async with request.app[DB].engine.begin() as conn:
            t = await store.update(conn, kind, p.workspace_id, request.match_info["path"], body,
                                   secrets=request.app[SECRETS])
    except store.TriggerInputError as exc:
        raise _input_error(exc) from None
    return json_response(trigger_json(t, kind))


@routes.post("/api/w/{workspace}/triggers/{kind}/update/{path:.+}")
async def update_trigger(request: web.Request) -> web.Response:
    await require(request, "triggers:write")
    return await _update(request, await read_json(request))


@routes.post("/api/w/{workspace}/triggers/{kind}/setmode/{path:.+}")
async def set_mode(request: web.Request) -> web.Response:
    await require(request, "triggers:write")
    body = await read_json(request)
    if body.get("mode") not in MODES:
        raise ApiError(400, "invalid_field", f"mode must be one of {', '.join(MODES)}", field="mode")
    return await _update(request, {"mode": body["mode"]})


@routes.route("DELETE", "/api/w/{workspace}/triggers/{kind}/delete/{path:.+}")
@routes.post("/api/w/{workspace}/triggers/{kind}/delete/{path:.+}")
async def delete_trigger(request: web.Request) -> web.Response:
    p = await require(request, "triggers:write")
    kind = kind_of(request)
    async with request.app[DB].engine.begin() as conn:
        deleted = await store.delete(conn, p.workspace_id, kind.id, request.match_info["path"])
    if not deleted:
        raise ApiError(404, "not_found", f"no {kind.id} trigger at {request.match_info['path']!r}")
    return json_response({"deleted": request.match_info["path"]})
