"""Creating, listing and revoking a workspace's API tokens."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from aiohttp import web

from headrace.core import tokens as tok
from headrace.core.schema import tokens

from ..auth import require
from ..http import ApiError, json_response, read_json
from ..keys import DB, TOKENS

routes = web.RouteTableDef()


@routes.post("/api/w/{workspace}/tokens/create")
async def create_token(request: web.Request) -> web.Response:
    p = await require(request, "tokens:write")
    body = await read_json(request)
    scopes = body.get("scopes", ["*"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes) or not scopes:
        raise ApiError(400, "invalid_field", "scopes must be a non-empty list of strings", field="scopes")
    unknown = tok.validate_scopes(scopes)
    if unknown:
        raise ApiError(400, "invalid_field", f"unknown scopes {unknown}", field="scopes")
    beyond = [s for s in scopes if not p.allows(s)]
    if beyond:
        raise ApiError(403, "forbidden", f"cannot grant scopes this token lacks: {beyond}")
    expires_in = body.get("expires_in_s")
    if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0):
        raise ApiError(400, "invalid_field", "expires_in_s must be a positive integer", field="expires_in_s")
    script_path = body.get("script_path")
    if script_path is not None and not isinstance(script_path, str):
        raise ApiError(400, "invalid_field", "script_path must be a string", field="script_path")
    label = body.get("label", "")
    if not isinstance(label, str):
        raise ApiError(400, "invalid_field", "label must be a string", field="label")
    async with request.app[DB].engine.begin() as conn:
        token = await tok.create_token(
            conn, p.workspace_id, scopes=scopes, label=label, owner=p.owner,
            expires_in=timedelta(seconds=expires_in) if expires_in else None,
            script_path=script_path,
        )
    return json_response({"token": token, "prefix": token[: len(tok.TOKEN_PREFIX) + 6]}, status=201)


@routes.get("/api/w/{workspace}/tokens/list")
async def list_tokens(request: web.Request) -> web.Response:
    p = await require(request, "tokens:read")
    async with request.app[DB].engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(tokens.c.prefix, tokens.c.label, tokens.c.owner, tokens.c.scopes,
                      tokens.c.script_path, tokens.c.expires_at, tokens.c.created_at)
            .where(tokens.c.workspace_id == p.workspace_id, tokens.c.job_id.is_(None))
            .order_by(tokens.c.created_at)
        )).mappings().all()
    return json_response([dict(r) for r in rows])


@routes.post("/api/w/{workspace}/tokens/delete/{prefix}")
async def delete_token(request: web.Request) -> web.Response:
    p = await require(request, "tokens:write")
    async with request.app[DB].engine.begin() as conn:
        deleted = (await conn.execute(
            tokens.delete()
            .where(tokens.c.workspace_id == p.workspace_id, tokens.c.prefix == request.match_info["prefix"])
            .returning(tokens.c.hash)
        )).scalars().all()
    if not deleted:
        raise ApiError(404, "not_found", "no token with that prefix")
    for h in deleted:
        request.app[TOKENS].evict(h)
    return json_response({"deleted": len(deleted)})
