"""Unauthenticated probes, the caller's identity, workspaces and the plugin report."""
from __future__ import annotations

import importlib.metadata

import sqlalchemy as sa
from aiohttp import web

from headrace.core.schema import workspaces

from ..auth import authenticate, require
from ..http import json_response
from ..keys import DB, REGISTRY

routes = web.RouteTableDef()


def version_string() -> str:
    try:
        return importlib.metadata.version("headrace")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0.0.0"


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    # Windmill's clients read this as text.
    return web.Response(text=f"Headrace v{version_string()}", content_type="text/plain")


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    try:
        async with request.app[DB].engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return json_response({"status": "ok", "database": "ok"})
    except Exception as exc:
        return json_response({"status": "degraded", "database": str(exc)}, status=503)


@routes.get("/api/users/whoami")
async def whoami(request: web.Request) -> web.Response:
    p = await authenticate(request)
    return json_response({
        "email": f"{p.owner}@headrace.local", "username": p.owner, "workspace_id": p.workspace_id,
        "is_admin": "*" in p.scopes, "is_super_admin": False, "scopes": list(p.scopes),
    })


@routes.get("/api/workspaces/list")
async def list_workspaces(request: web.Request) -> web.Response:
    p = await authenticate(request)
    async with request.app[DB].engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(workspaces.c.id, workspaces.c.name).where(workspaces.c.id == p.workspace_id)
        )).mappings().all()
    return json_response([dict(r) for r in rows])


@routes.get("/api/w/{workspace}/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    await require(request, "*")
    infos = request.app[REGISTRY].describe()
    return json_response([info.__dict__ for info in infos])
