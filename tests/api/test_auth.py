"""Tokens: every route needs one, they are stored hashed, expire, carry scopes and one workspace."""
from __future__ import annotations

import asyncio
import re

import pytest

from headrace.core.tokens import hash_token

# Routes that answer without a token, and why.
PUBLIC = {
    "/api/version",  # Windmill's clients probe it before they authenticate
    "/api/health",  # load balancers
    "/api/openapi.json",  # the API's description (DESIGN.md: served without a token)
    "/{tail}",  # the 404 catch-all
    "/api/r/{tail}",  # user-defined HTTP triggers: each trigger's own auth decides (404 when none matches)
}

SAMPLE = {"workspace": "main", "ref": "u/admin/x", "path": "u/admin/x", "id": "6abf912c-64fa-418c-9cfe-712c06d43de3",
          "hash": "0123456789abcdef", "prefix": "hr_abcdef", "tail": "x/y"}


def _sample_url(route) -> str:
    info = route.resource.get_info()
    template = info.get("path") or info["formatter"]

    def value(m: re.Match) -> str:
        name = m.group(1)
        if name == "kind":
            return "p" if "/jobs/" in template else "http"
        return SAMPLE[name]

    return re.sub(r"\{(\w+)\}", value, template)


async def test_every_route_needs_a_token(server):
    checked = 0
    for route in server.app.router.routes():
        info = route.resource.get_info()
        template = info.get("path") or info.get("formatter")
        if template in PUBLIC:
            continue
        method = "POST" if route.method == "*" else route.method
        url = _sample_url(route)
        r = await server.request(method, url, json={})
        assert r.status == 401, f"{method} {template} answered {r.status} without a token"
        if method != "HEAD":
            assert (await r.json())["error"]["code"] == "unauthorized"
        checked += 1
    assert checked > 20


async def test_public_routes(server):
    r = await server.get("/api/version")
    assert r.status == 200 and (await r.text()).startswith("Headrace v")
    r = await server.get("/api/health")
    assert (r.status, await r.json()) == (200, {"status": "ok", "database": "ok"})
    r = await server.get("/no/such/route")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await server.post("/api/r/no/such/trigger", json={})
    assert r.status == 404


async def test_unknown_and_malformed_tokens_are_401(server):
    for header in ("Bearer hr_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "hr_bare"):
        r = await server.get("/api/w/main/scripts/list", headers={"Authorization": header})
        assert r.status == 401, header
        assert (await r.json())["error"]["code"] == "unauthorized"


async def test_raw_token_is_stored_nowhere(api, sql):
    r = await api.post("tokens/create", {"scopes": ["jobs:run"], "label": "hook"})
    assert r.status == 201
    token = (await r.json())["token"]
    secret = token.removeprefix("hr_")
    dump = "\n".join(str(dict(row)) for row in await sql("SELECT * FROM tokens"))
    assert secret not in dump and secret[:20] not in dump
    assert hash_token(token) in dump
    # And the new token works.
    r = await api.client.get("/api/users/whoami", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and (await r.json())["scopes"] == ["jobs:run"]


async def test_expired_token_is_401(server, token_for):
    from datetime import timedelta

    expired = await token_for(expires_in=timedelta(seconds=-1))
    r = await server.get("/api/w/main/scripts/list", headers={"Authorization": f"Bearer {expired}"})
    assert r.status == 401 and "expired" in (await r.json())["error"]["message"]


async def test_token_stops_working_when_it_expires(api):
    r = await api.post("tokens/create", {"scopes": ["scripts:read"], "expires_in_s": 1})
    assert r.status == 201, await r.text()
    short = {"Authorization": f"Bearer {(await r.json())['token']}"}
    r = await api.get("scripts/list", headers=short)
    assert r.status == 200  # valid now, and now in the server's token cache
    await asyncio.sleep(1.2)
    r = await api.get("scripts/list", headers=short)
    assert r.status == 401


async def test_deleted_token_is_401_at_once(api):
    r = await api.post("tokens/create", {"scopes": ["scripts:read"], "label": "temp"})
    body = await r.json()
    temp = {"Authorization": f"Bearer {body['token']}"}
    assert (await api.get("scripts/list", headers=temp)).status == 200
    r = await api.post(f"tokens/delete/{body['prefix']}")
    assert (r.status, await r.json()) == (200, {"deleted": 1})
    assert (await api.get("scripts/list", headers=temp)).status == 401
    r = await api.post(f"tokens/delete/{body['prefix']}")
    assert r.status == 404


@pytest.mark.parametrize("scopes, method, tail, needed", [
    (["scripts:read"], "POST", "scripts/create", "scripts:write"),
    (["jobs:run"], "GET", "scripts/list", "scripts:read"),
    (["scripts:*"], "POST", "jobs/run/p/u/admin/x", "jobs:run"),
    (["jobs:run", "scripts:read"], "POST", "tokens/create", "tokens:write"),
    (["scripts:*"], "GET", "tokens/list", "tokens:read"),
    (["jobs:read"], "POST", "jobs_u/queue/cancel/6abf912c-64fa-418c-9cfe-712c06d43de3", "jobs:cancel"),
])
async def test_scopes_are_enforced(server, token_for, scopes, method, tail, needed):
    token = await token_for(scopes)
    r = await server.request(method, f"/api/w/main/{tail}", json={}, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 403
    error = (await r.json())["error"]
    assert error["code"] == "forbidden" and error["scope"] == needed


async def test_area_wildcard_scope_grants_the_area(api, token_for):
    await api.create_script("u/admin/one", "def main():\n    return 1\n")
    token = await token_for(["scripts:*"])
    r = await api.get("scripts/get/p/u/admin/one", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200


async def test_a_token_cannot_grant_more_than_it_has(api, token_for):
    token = await token_for(["tokens:write", "scripts:read"])
    h = {"Authorization": f"Bearer {token}"}
    r = await api.post("tokens/create", {"scopes": ["scripts:read"]}, headers=h)
    assert r.status == 201
    r = await api.post("tokens/create", {"scopes": ["scripts:write"]}, headers=h)
    assert r.status == 403 and "scripts:write" in (await r.json())["error"]["message"]
    r = await api.post("tokens/create", {"scopes": ["*"]}, headers=h)
    assert r.status == 403


@pytest.mark.parametrize("body, field", [
    ({"scopes": []}, "scopes"),
    ({"scopes": "*"}, "scopes"),
    ({"scopes": ["root"]}, "scopes"),
    ({"expires_in_s": 0}, "expires_in_s"),
    ({"expires_in_s": "soon"}, "expires_in_s"),
    ({"label": 3}, "label"),
])
async def test_token_create_rejects_bad_fields(api, body, field):
    r = await api.post("tokens/create", body)
    assert r.status == 400
    assert (await r.json())["error"]["field"] == field


async def test_workspace_isolation(api, other_workspace):
    other, other_token = other_workspace
    await api.create_script("u/admin/secret", "def main():\n    return 'main only'\n")
    theirs = {"Authorization": f"Bearer {other_token}"}
    # A token of one workspace gets 403 on every route of another.
    for method, tail in [("GET", "scripts/list"), ("GET", "scripts/get/p/u/admin/secret"),
                         ("POST", "jobs/run_wait_result/p/u/admin/secret"), ("GET", "tokens/list"),
                         ("POST", "scripts/create")]:
        r = await api.client.request(method, f"/api/w/main/{tail}", json={}, headers=theirs)
        assert r.status == 403, tail
        assert "workspace 'main'" in (await r.json())["error"]["message"]
    r = await api.client.get(f"/api/w/{other}/scripts/list", headers=api.headers)
    assert r.status == 403
    # The same path in the other workspace is a different script.
    r = await api.client.get(f"/api/w/{other}/scripts/get/p/u/admin/secret", headers=theirs)
    assert r.status == 404
    r = await api.client.post(f"/api/w/{other}/scripts/create", headers=theirs, json={
        "path": "u/admin/secret", "content": "def main():\n    return 'other'\n", "language": "python3"})
    assert r.status == 201
    r = await api.client.post(f"/api/w/{other}/jobs/run_wait_result/p/u/admin/secret", headers=theirs, json={})
    assert (r.status, await r.json()) == (200, "other")
    assert await api.run_wait("u/admin/secret") == (200, "main only")
    r = await api.client.get("/api/workspaces/list", headers=theirs)
    assert await r.json() == [{"id": "other", "name": "Other"}]
