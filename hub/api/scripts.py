"""Scripts by path with immutable versions, Windmill's routes and payloads."""
from __future__ import annotations

from aiohttp import web

from headrace.core import scripts as store
from headrace.core.languages import ScriptError

from ..auth import require
from ..http import ApiError, field_str, json_response, read_json
from ..keys import DB, LANGUAGES, SETTINGS, SINK

routes = web.RouteTableDef()


def script_json(row: dict) -> dict:
    return {
        "hash": row["hash"], "path": row["path"], "parent_hash": row["parent_hash"],
        "language": row["language"], "content": row["content"], "summary": row["summary"],
        "description": row["description"], "schema": row["schema"], "created_by": row["created_by"],
        "created_at": row["created_at"], "archived": row["archived"], "lock": row["lock"],
    }


@routes.post("/api/w/{workspace}/scripts/create")
async def create_script(request: web.Request) -> web.Response:
    p = await require(request, "scripts:write")
    body = await read_json(request)
    new = store.NewScript(
        path=field_str(body, "path"),
        content=field_str(body, "content"),
        language=field_str(body, "language"),
        summary=field_str(body, "summary", required=False),
        description=field_str(body, "description", required=False),
        parent_hash=field_str(body, "parent_hash", required=False, default="") or None,
    )
    # Dependencies are pinned once per version, outside the transaction (it may take a while).
    language = request.app[LANGUAGES].resolve(new.language)
    lock = None
    if language is not None:
        try:
            lock = await language.lock(new.content, request.app[SETTINGS].job_cache_dir)
        except ScriptError as exc:
            raise ApiError(400, "invalid_script", exc.message, field="content",
                           line=exc.line, column=exc.column) from None
    try:
        async with request.app[DB].engine.begin() as conn:
            script_hash = await store.create(
                conn, request.app[LANGUAGES], p.workspace_id, new, p.owner, lock=lock
            )
    except store.ScriptInputError as exc:
        raise ApiError(400, "invalid_script", exc.message, field=exc.field, **exc.extra) from None
    except store.VersionConflict as exc:
        raise ApiError(409, "conflict", str(exc), latest=exc.latest) from None
    request.app[SINK].forget_script(p.workspace_id, new.path)  # webhooks run the new version at once
    # Windmill answers the new version's hash as text.
    return web.Response(text=script_hash, status=201, content_type="text/plain")


@routes.get("/api/w/{workspace}/scripts/get/p/{path:.+}")
async def get_script_by_path(request: web.Request) -> web.Response:
    p = await require(request, "scripts:read")
    async with request.app[DB].engine.connect() as conn:
        row = await store.latest(conn, p.workspace_id, request.match_info["path"])
    if row is None:
        raise ApiError(404, "not_found", f"no script at path {request.match_info['path']!r}")
    return json_response(script_json(row))


@routes.get("/api/w/{workspace}/scripts/get/h/{hash}")
async def get_script_by_hash(request: web.Request) -> web.Response:
    p = await require(request, "scripts:read")
    async with request.app[DB].engine.connect() as conn:
        row = await store.by_hash(conn, p.workspace_id, request.match_info["hash"])
    if row is None:
        raise ApiError(404, "not_found", f"no script version {request.match_info['hash']!r}")
    return json_response(script_json(row))


@routes.get("/api/w/{workspace}/scripts/list")
async def list_scripts(request: web.Request) -> web.Response:
    p = await require(request, "scripts:read")
    async with request.app[DB].engine.connect() as conn:
        rows = await store.list_latest(conn, p.workspace_id)
    return json_response([{k: v for k, v in script_json(r).items() if k != "content"} for r in rows])


@routes.get("/api/w/{workspace}/scripts/history/p/{path:.+}")
async def script_history(request: web.Request) -> web.Response:
    p = await require(request, "scripts:read")
    async with request.app[DB].engine.connect() as conn:
        rows = await store.history(conn, p.workspace_id, request.match_info["path"])
    if not rows:
        raise ApiError(404, "not_found", f"no script at path {request.match_info['path']!r}")
    return json_response(rows)


@routes.post("/api/w/{workspace}/scripts/archive/p/{path:.+}")
async def archive_script(request: web.Request) -> web.Response:
    p = await require(request, "scripts:write")
    async with request.app[DB].engine.begin() as conn:
        count = await store.archive(conn, p.workspace_id, request.match_info["path"])
    request.app[SINK].forget_script(p.workspace_id, request.match_info["path"])
    if not count:
        raise ApiError(404, "not_found", f"no script at path {request.match_info['path']!r}")
    return json_response({"archived": count})
