"""HTTP-route triggers served under /api/r/<workspace>/...: params, two servers, auth, idempotency, modes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa


async def _live(make_route, wait_route, server, route_path, tail, method="POST", **config):
    trigger = await make_route(route_path, method=method, **config)
    await wait_route(server, method, tail)
    return trigger


# -- routing, args, envelope -------------------------------------------------------------------

async def test_params_rest_and_envelope(make_route, wait_route, server, api, db):
    trigger = await _live(make_route, wait_route, server, "/items/:id/*rest", "/main/items/1/a")
    r = await server.post("/api/r/main/items/42/a/b/c?q=1&token=hidden", json={"x": 1, "id": "body-id"},
                          headers={"X-Trace": "t1"})
    assert r.status == 201, await r.text()
    accepted = await r.json()
    assert accepted["status"] == "queued" and r.headers["X-Headrace-Job-Id"] == accepted["job_id"]
    job = await api.wait_job(accepted["job_id"])
    # Path parameters become args (and win over body keys of the same name).
    assert job["result"] == {"x": 1, "id": "42", "rest": "a/b/c"}

    r = await server.post("/api/r/main/items/7", json={})
    job = await api.wait_job((await r.json())["job_id"])
    assert job["result"] == {"id": "7"}  # an empty *rest is left out

    row = await db.fetchrow("SELECT kind, trigger_id, payload::text AS payload FROM events WHERE job_id = $1",
                            uuid.UUID(accepted["job_id"]))
    assert row["kind"] == "http" and str(row["trigger_id"]) == trigger["id"]
    payload = json.loads(row["payload"])
    assert payload["trigger"] == trigger["path"] and payload["route"] == "/items/:id/*rest"
    assert payload["method"] == "POST" and payload["path"] == "/api/r/main/items/42/a/b/c"
    assert payload["params"] == {"id": "42", "rest": "a/b/c"}
    assert payload["query"] == {"q": "1"}
    assert payload["headers"]["x-trace"] == "t1"
    assert payload["body"] == {"x": 1, "id": "body-id"} and payload["auth"] == {"method": "none"}

    # The path matched, but not the method; and an unknown path.
    r = await server.get("/api/r/main/items/42")
    assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
    r = await server.post("/api/r/main/nothing-here")
    assert r.status == 404 and (await r.json())["error"]["code"] == "no_route"
    # Routes belong to their workspace.
    r = await server.post("/api/r/other/items/42", json={})
    assert r.status == 404


async def test_bad_body_and_args_are_4xx(make_route, wait_route, server, api):
    await api.create_script("f/t/strict", "def main(n: int):\n    return n\n")
    await make_route("/strict", script_path="f/t/strict")
    await wait_route(server, "POST", "/main/strict")
    r = await server.post("/api/r/main/strict", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    r = await server.post("/api/r/main/strict", json={"n": "three"})
    body = await r.json()
    assert r.status == 400 and body["error"]["field"] == "n", body


async def test_change_reaches_another_server_without_restart(http_triggers, echo_script, server,
                                                            second_server, wait_route):
    """Created, changed and deleted on server A; served (or not) by server B over the same database."""
    status, _ = await http_triggers.create({"path": "f/t/two", "script_path": echo_script,
                                            "config": {"route_path": "/two/:n", "request_type": "sync"}})
    assert status == 201
    await wait_route(second_server, "POST", "/main/two/1")
    r = await second_server.post("/api/r/main/two/1", json={"via": "B"})
    assert r.status == 200 and await r.json() == {"via": "B", "n": "1"}

    status, _ = await http_triggers.update("f/t/two", {"config": {"route_path": "/three/:n", "request_type": "sync"}})
    assert status == 200
    await wait_route(second_server, "POST", "/main/three/2")
    r = await second_server.post("/api/r/main/two/1", json={})
    assert r.status == 404
    r = await second_server.post("/api/r/main/three/2", json={})
    assert r.status == 200 and await r.json() == {"n": "2"}

    status, _ = await http_triggers.delete("f/t/two")
    assert status == 200
    await wait_route(second_server, "POST", "/main/three/2", gone=True)
    r = await second_server.post("/api/r/main/three/2", json={})
    assert r.status == 404


# -- request types -----------------------------------------------------------------------------

async def test_sync_result_object_and_failure(make_route, wait_route, server, api):
    await api.create_script("f/t/shaped", (
        "def main(fail: bool = False):\n"
        "    if fail:\n"
        "        raise ValueError('asked to fail')\n"
        "    return {'headrace_response': {'status_code': 203, 'headers': {'X-Answer': '42'},\n"
        "            'content_type': 'text/csv', 'body': 'a,b'}}\n"))
    await make_route("/shaped", script_path="f/t/shaped", request_type="sync")
    await wait_route(server, "POST", "/main/shaped")
    r = await server.post("/api/r/main/shaped", json={})
    assert r.status == 203 and r.headers["X-Answer"] == "42"
    assert r.content_type == "text/csv" and await r.text() == "a,b"
    r = await server.post("/api/r/main/shaped", json={"fail": True})
    body = await r.json()
    assert r.status == 422 and body["error"]["code"] == "job_failed" and "asked to fail" in body["error"]["message"]


def _sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_server_sent_events(make_route, wait_route, server, api):
    await api.create_script("f/t/chatty", (
        "def main(n: int):\n"
        "    for i in range(n):\n"
        "        print(f'step {i}')\n"
        "    return {'steps': n}\n"))
    await make_route("/chatty", script_path="f/t/chatty", request_type="sse")
    await wait_route(server, "POST", "/main/chatty")
    r = await server.post("/api/r/main/chatty", json={"n": 3})
    assert r.status == 200 and r.content_type == "text/event-stream"
    events = _sse_events(await r.text())  # the stream ends by itself once the job completes
    names = [name for name, _ in events]
    assert names[0] == "queued" and names[-1] == "result" and "started" in names
    assert names.index("started") < names.index("result")
    job_id = events[0][1]["job_id"]
    assert events[-1][1] == {"job_id": job_id, "success": True, "status": "success", "result": {"steps": 3}}
    logs = "".join(data["chunk"] for name, data in events if name == "log")
    assert "step 0" in logs and "step 2" in logs

    r = await server.post("/api/r/main/chatty", json={"n": "x"})
    assert r.status == 400  # refused before the stream starts


async def test_idempotency_key_returns_the_first_job(make_route, wait_route, server, api, db):
    await make_route("/once")
    await make_route("/once-sync", request_type="sync")
    await wait_route(server, "POST", "/main/once")
    await wait_route(server, "POST", "/main/once-sync")

    first = await server.post("/api/r/main/once", json={"n": 1}, headers={"Idempotency-Key": "k-1"})
    again = await server.post("/api/r/main/once", json={"n": 2}, headers={"Idempotency-Key": "k-1"})
    other = await server.post("/api/r/main/once", json={"n": 3}, headers={"Idempotency-Key": "k-2"})
    a, b, c = await first.json(), await again.json(), await other.json()
    assert first.status == 201 and again.status == 200 and b["duplicate"] is True
    assert a["job_id"] == b["job_id"] != c["job_id"]
    n = await db.fetchval("SELECT count(*) FROM events WHERE dedup_key = 'idem:k-1'")
    assert n == 1

    r1 = await server.post("/api/r/main/once-sync", json={"n": 1}, headers={"Idempotency-Key": "s"})
    r2 = await server.post("/api/r/main/once-sync", json={"n": 2}, headers={"Idempotency-Key": "s"})
    assert await r1.json() == await r2.json() == {"n": 1}
    assert r1.headers["X-Headrace-Job-Id"] == r2.headers["X-Headrace-Job-Id"]

    r = await server.post("/api/r/main/once", json={}, headers={"Idempotency-Key": "x" * 300})
    assert r.status == 400 and (await r.json())["error"]["field"] == "Idempotency-Key"


# -- auth --------------------------------------------------------------------------------------

async def test_auth_headrace_token(make_route, wait_route, server, api, token_for, db):
    await db.execute("INSERT INTO workspaces (id, name) VALUES ('other', 'Other')")
    await _live(make_route, wait_route, server, "/tok", "/main/tok", auth={"method": "token"}, request_type="sync")
    r = await server.post("/api/r/main/tok", json={"a": 1})
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await server.post("/api/r/main/tok", json={"a": 1}, headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    theirs = await token_for(workspace="other")
    r = await server.post("/api/r/main/tok", json={"a": 1}, headers={"Authorization": f"Bearer {theirs}"})
    assert r.status == 403 and "workspace" in (await r.json())["error"]["message"]
    reader = await token_for(["jobs:read"])
    r = await server.post("/api/r/main/tok", json={"a": 1}, headers={"Authorization": f"Bearer {reader}"})
    assert r.status == 403 and "jobs:run" in (await r.json())["error"]["message"]
    r = await server.post("/api/r/main/tok", json={"a": 1}, headers=api.headers)
    assert r.status == 200 and await r.json() == {"a": 1}


async def test_auth_api_key(make_route, wait_route, server, db):
    await _live(make_route, wait_route, server, "/key", "/main/key",
                auth={"method": "api_key", "header": "X-Hook-Key", "secret": "k3y"})
    r = await server.post("/api/r/main/key", json={})
    assert r.status == 401 and "X-Hook-Key" in (await r.json())["error"]["message"]
    r = await server.post("/api/r/main/key", json={}, headers={"X-Hook-Key": "k3z"})
    assert r.status == 401
    r = await server.post("/api/r/main/key", json={}, headers={"X-Hook-Key": "k3y"})
    assert r.status == 201
    payload = await db.fetchval("SELECT payload::text FROM events WHERE job_id = $1",
                                uuid.UUID((await r.json())["job_id"]))
    assert "k3y" not in payload  # the key header is never copied into the event


async def test_auth_basic(make_route, wait_route, server):
    await _live(make_route, wait_route, server, "/basic", "/main/basic",
                auth={"method": "basic", "username": "ann", "password": "pa:ss"}, request_type="sync")

    def basic(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    r = await server.post("/api/r/main/basic", json={})
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    for headers in (basic("ann", "wrong"), basic("bob", "pa:ss"), {"Authorization": "Basic !!!"}):
        r = await server.post("/api/r/main/basic", json={}, headers=headers)
        assert r.status == 401, headers
    r = await server.post("/api/r/main/basic", json={"ok": True}, headers=basic("ann", "pa:ss"))
    assert r.status == 200 and await r.json() == {"ok": True}


def _hex(secret: str, message: bytes, algorithm=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), message, algorithm).hexdigest()


async def test_hmac_github(make_route, wait_route, server):
    await _live(make_route, wait_route, server, "/gh", "/main/gh",
                auth={"method": "hmac", "preset": "github", "secret": "gh-secret"})
    body = b'{"action": "opened"}'
    good = {"X-Hub-Signature-256": "sha256=" + _hex("gh-secret", body), "Content-Type": "application/json",
            "X-GitHub-Delivery": "d-1"}
    r = await server.post("/api/r/main/gh", data=body, headers={**good, "X-Hub-Signature-256": "sha256=00"})
    assert r.status == 401
    r = await server.post("/api/r/main/gh", data=b'{"action": "closed"}', headers=good)
    assert r.status == 401  # the signature covers the body
    r = await server.post("/api/r/main/gh", data=body, headers=good)
    assert r.status == 201
    first = await r.json()
    # A redelivery (same delivery id) returns the first job instead of running again.
    r = await server.post("/api/r/main/gh", data=body, headers=good)
    assert r.status == 200 and (await r.json())["job_id"] == first["job_id"]


async def test_hmac_slack(make_route, wait_route, server):
    await _live(make_route, wait_route, server, "/slack", "/main/slack",
                auth={"method": "hmac", "preset": "slack", "secret": "sl"})
    body = b"token=x&command=%2Fdeploy&text=now"

    def signed(ts: int, secret="sl"):
        return {"X-Slack-Request-Timestamp": str(ts), "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Signature": "v0=" + _hex(secret, b"v0:%d:" % ts + body)}

    now = int(time.time())
    r = await server.post("/api/r/main/slack", data=body, headers=signed(now - 301))
    assert r.status == 401 and "replay" in (await r.json())["error"]["message"]
    r = await server.post("/api/r/main/slack", data=body, headers=signed(now, secret="other"))
    assert r.status == 401
    r = await server.post("/api/r/main/slack", data=body, headers=signed(now))
    assert r.status == 201, await r.text()
    r = await server.post("/api/r/main/slack", data=body, headers=signed(now))
    assert r.status == 409 and (await r.json())["error"]["code"] == "replay_refused"
    # An Idempotency-Key header (unsigned) does not get a replay through.
    r = await server.post("/api/r/main/slack", data=body, headers={**signed(now), "Idempotency-Key": "new"})
    assert r.status == 409


async def test_hmac_stripe(make_route, wait_route, server, api):
    await _live(make_route, wait_route, server, "/stripe", "/main/stripe",
                auth={"method": "hmac", "preset": "stripe", "secret": "whsec_1", "tolerance_s": 60})
    body = b'{"type": "charge.succeeded"}'

    def signed(ts: int, secret="whsec_1"):
        sig = _hex(secret, b"%d." % ts + body)
        # One v1 per active secret while rolling them: any may match.
        return {"Stripe-Signature": f"t={ts},v1={'0' * 64},v1={sig}", "Content-Type": "application/json"}

    now = int(time.time())
    r = await server.post("/api/r/main/stripe", data=body, headers=signed(now - 61))
    assert r.status == 401
    r = await server.post("/api/r/main/stripe", data=body, headers={"Stripe-Signature": "garbage"})
    assert r.status == 401
    r = await server.post("/api/r/main/stripe", data=body, headers=signed(now, secret="whsec_2"))
    assert r.status == 401
    r = await server.post("/api/r/main/stripe", data=body, headers=signed(now))
    assert r.status == 201
    job = await api.wait_job((await r.json())["job_id"])
    assert job["result"] == {"type": "charge.succeeded"}
    r = await server.post("/api/r/main/stripe", data=body, headers=signed(now))
    assert r.status == 409


async def test_hmac_custom(make_route, wait_route, server):
    await _live(make_route, wait_route, server, "/custom", "/main/custom", auth={
        "method": "hmac", "preset": "custom", "secret": "c", "header": "X-Sig", "algorithm": "sha512",
        "prefix": "sha512=", "encoding": "base64", "timestamp_header": "X-Time"})
    body = b'{"x": 1}'

    def signed(ts: int, prefix="sha512="):
        digest = hmac.new(b"c", b"%d." % ts + body, hashlib.sha512).digest()
        return {"X-Time": str(ts), "X-Sig": prefix + base64.b64encode(digest).decode(),
                "Content-Type": "application/json"}

    now = int(time.time())
    r = await server.post("/api/r/main/custom", data=body, headers=signed(now, prefix="v1="))
    assert r.status == 401
    r = await server.post("/api/r/main/custom", data=body, headers={**signed(now), "X-Time": "soon"})
    assert r.status == 401
    r = await server.post("/api/r/main/custom", data=body, headers=signed(now))
    assert r.status == 201
    r = await server.post("/api/r/main/custom", data=body, headers=signed(now))
    assert r.status == 409
    # Multipart bodies cannot be verified byte for byte: refused clearly.
    form = FormData()
    form.add_field("f", b"x", filename="f.txt")
    r = await server.post("/api/r/main/custom", data=form, headers={"X-Time": str(now), "X-Sig": "sha512="})
    assert r.status == 415 and (await r.json())["error"]["code"] == "unsupported_media_type"


JWT_SECRET = "a shared secret of at least 32 bytes, for HS256 and HS512 alike......"


async def test_jwt_hs256(make_route, wait_route, server):
    await _live(make_route, wait_route, server, "/jwt", "/main/jwt", request_type="sync", auth={
        "method": "jwt", "algorithm": "HS256", "secret": JWT_SECRET, "issuer": "me", "audience": "hooks"})
    now = int(time.time())
    claims = {"sub": "ann", "iss": "me", "aud": "hooks", "exp": now + 60}

    async def call(token: str):
        return await server.post("/api/r/main/jwt", json={}, headers={"Authorization": f"Bearer {token}"})

    r = await server.post("/api/r/main/jwt", json={})
    assert r.status == 401
    for bad in ({**claims, "exp": now - 10}, {**claims, "iss": "you"}, {**claims, "aud": "other"},
                {k: v for k, v in claims.items() if k != "exp"}):
        r = await call(jwt.encode(bad, JWT_SECRET, algorithm="HS256"))
        assert r.status == 401, bad
    r = await call(jwt.encode(claims, "w" * 32, algorithm="HS256"))
    assert r.status == 401
    r = await call(jwt.encode(claims, JWT_SECRET, algorithm="HS512"))
    assert r.status == 401  # only the configured algorithm is accepted
    r = await call(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))
    assert r.status == 200, await r.text()


@pytest.fixture
async def jwks_server():
    """A JWKS endpoint on 127.0.0.1 serving one RSA public key (kid "k1"); yields (url, private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})

    async def keys(_request):
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", keys)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield str(srv.make_url("/.well-known/jwks.json")), key
    await srv.close()


async def test_jwt_rs256_via_jwks(make_route, wait_route, server, jwks_server):
    url, key = jwks_server
    await _live(make_route, wait_route, server, "/rs", "/main/rs", request_type="sync",
                auth={"method": "jwt", "algorithm": "RS256", "jwks_url": url, "audience": "hooks"})
    claims = {"sub": "svc", "aud": "hooks", "exp": int(time.time()) + 60}

    async def call(token: str):
        return await server.post("/api/r/main/rs", json={"n": 1}, headers={"Authorization": f"Bearer {token}"})

    r = await call(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"}))
    assert r.status == 200 and await r.json() == {"n": 1}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = await call(jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"}))
    assert r.status == 401
    r = await call(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "unknown"}))
    assert r.status == 401 and "unknown" in (await r.json())["error"]["message"]
    r = await call(jwt.encode({**claims, "aud": "else"}, key, algorithm="RS256", headers={"kid": "k1"}))
    assert r.status == 401


async def test_jwks_unreachable_is_503(make_route, wait_route, server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await _live(make_route, wait_route, server, "/rs", "/main/rs", auth={
        "method": "jwt", "algorithm": "RS256", "jwks_url": f"http://127.0.0.1:{port}/jwks"})
    token = jwt.encode({"exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256", headers={"kid": "k"})
    r = await server.post("/api/r/main/rs", json={}, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 503 and (await r.json())["error"]["code"] == "jwks_unavailable"


async def test_replay_rebuilds_params_and_body(make_route, wait_route, server, api):
    await _live(make_route, wait_route, server, "/re/:id", "/main/re/1", mode="capture")
    r = await server.post("/api/r/main/re/9", json={"x": 2})
    assert r.status == 202
    captured = await r.json()
    r = await api.post(f"events/replay/{captured['event_id']}", {})
    assert r.status == 201, await r.text()
    job = await api.wait_job((await r.json())["job_id"])
    assert job["result"] == {"x": 2, "id": "9"}
