"""Trigger credentials at rest: sealed in the triggers row, masked in reads, clear only where the trigger runs."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime
from typing import ClassVar

import jwt
import pytest
from headrace.core.hookspecs import hookimpl
from headrace.core.plugins import build_registry
from headrace.core.secrets import is_encrypted
from headrace.core.triggers import TriggerKind
from headrace.hub.keys import SECRETS
from headrace.plugins.triggers.http.config import MASK


def new_secret() -> str:
    return "s3cr3t-" + uuid.uuid4().hex


# Each auth method that holds a secret: (config.auth for a secret, the field holding it, a request
# signed with a secret -> (headers, body)).
def _api_key(secret):
    return {"X-Shop-Key": secret}, b"{}"


def _basic(secret):
    return {"Authorization": "Basic " + base64.b64encode(f"ada:{secret}".encode()).decode()}, b"{}"


def _github(secret):
    body = json.dumps({"n": 1}).encode()
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={sig}", "X-GitHub-Delivery": uuid.uuid4().hex}, body


def _jwt(secret):
    token = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}, b"{}"


METHODS = {
    "api_key": ({"method": "api_key", "header": "X-Shop-Key"}, "secret", _api_key),
    "basic": ({"method": "basic", "username": "ada"}, "password", _basic),
    "hmac": ({"method": "hmac", "preset": "github"}, "secret", _github),
    "jwt": ({"method": "jwt", "algorithm": "HS256"}, "secret", _jwt),
}


async def _call(client, tail: str, method: str, secret: str) -> int:
    headers, body = METHODS[method][2](secret)
    r = await client.post(f"/api/r/main{tail}", data=body,
                          headers={"Content-Type": "application/json", **headers})
    return r.status


async def _stored(db, path: str) -> dict:
    return json.loads(await db.fetchval("SELECT config::text FROM triggers WHERE path = $1", path))


async def _everything_stored(db) -> str:
    """The text of every row that could keep a request or a trigger: ledger, jobs, logs, triggers."""
    parts = []
    for table in ("events", "queue", "completed_jobs", "job_logs", "triggers"):
        parts += [r[0] for r in await db.fetch(f"SELECT row_to_json(t)::text FROM {table} t")]
    return "\n".join(parts)


@pytest.mark.parametrize("method", list(METHODS))
async def test_secret_is_sealed_at_rest_and_opens_on_every_server(
        method, make_route, wait_route, http_triggers, server, second_server, api, db):
    auth, field, _ = METHODS[method]
    secret = new_secret()
    # include_headers names the credential headers too: they must still stay out of events and args.
    trigger = await make_route(f"/s/{method}", auth={**auth, field: secret},
                               include_headers=["X-Shop-Key", "Authorization"])
    assert trigger["config"]["auth"][field] == MASK

    # The row holds a sealed value, and the clear secret appears nowhere in it.
    stored = await _stored(db, trigger["path"])
    assert is_encrypted(stored["auth"][field])
    assert secret not in json.dumps(stored)

    # Both servers decrypt it to authenticate: the right secret passes, a wrong one does not.
    for client in (server, second_server):
        await wait_route(client, "POST", f"/main/s/{method}")
        assert await _call(client, f"/s/{method}", method, secret) == 201
        assert await _call(client, f"/s/{method}", method, new_secret()) == 401

    # Reads stay masked.
    status, got = await http_triggers.get(trigger["path"])
    assert status == 200 and got["config"]["auth"][field] == MASK
    status, items = await http_triggers.list()
    assert status == 200 and [t["config"]["auth"][field] for t in items] == [MASK]

    # The ledger, the jobs and their logs never hold the secret (nor, for basic, its header form).
    jobs = [r["job_id"] for r in await db.fetch("SELECT job_id FROM events WHERE job_id IS NOT NULL")]
    assert len(jobs) == 2
    for job_id in jobs:
        await api.wait_job(str(job_id))
    everything = await _everything_stored(db)
    assert secret not in everything
    assert base64.b64encode(f"ada:{secret}".encode()).decode() not in everything


async def test_update_with_the_mask_keeps_and_a_new_secret_reseals(
        make_route, wait_route, http_triggers, server, db):
    first = new_secret()
    trigger = await make_route("/rotate", auth={"method": "api_key", "header": "X-Shop-Key", "secret": first})
    sealed = (await _stored(db, trigger["path"]))["auth"]["secret"]

    # The read config sent back (secret masked) keeps the sealed value as it was.
    status, updated = await http_triggers.update(
        trigger["path"], {"config": {**trigger["config"], "method": "PUT"}})
    assert status == 200 and updated["config"]["auth"]["secret"] == MASK
    assert (await _stored(db, trigger["path"]))["auth"]["secret"] == sealed
    await wait_route(server, "PUT", "/main/rotate")
    r = await server.put("/api/r/main/rotate", json={}, headers={"X-Shop-Key": first})
    assert r.status == 201, await r.text()

    # A new secret is sealed again (a new ciphertext); the old secret stops working.
    second = new_secret()
    config = {**updated["config"], "auth": {**updated["config"]["auth"], "secret": second}}
    status, updated = await http_triggers.update(trigger["path"], {"config": config})
    assert status == 200 and updated["config"]["auth"]["secret"] == MASK
    resealed = (await _stored(db, trigger["path"]))["auth"]["secret"]
    assert is_encrypted(resealed) and resealed != sealed and second not in resealed
    await wait_route(server, "PUT", "/main/rotate", check=lambda t: t.config["auth"]["secret"] == second)
    r = await server.put("/api/r/main/rotate", json={}, headers={"X-Shop-Key": first})
    assert r.status == 401
    r = await server.put("/api/r/main/rotate", json={}, headers={"X-Shop-Key": second})
    assert r.status == 201, await r.text()


async def test_a_sealed_value_cannot_be_planted(make_route, http_triggers, db):
    """A client that sends ciphertext (say, another trigger's) gets a 400, not that trigger's secret."""
    victim = await make_route("/victim", auth={"method": "api_key", "secret": new_secret()})
    sealed = (await _stored(db, victim["path"]))["auth"]["secret"]
    status, body = await http_triggers.create({
        "path": "f/t/thief", "script_path": victim["script_path"],
        "config": {"route_path": "/thief", "auth": {"method": "api_key", "secret": sealed}}})
    assert status == 400 and body["error"]["field"] == "config.auth.secret", body
    status, body = await http_triggers.update(victim["path"], {"config": {
        "route_path": "/victim", "auth": {"method": "basic", "username": "u", "password": sealed}}})
    assert status == 400 and body["error"]["field"] == "config.auth.password", body


async def test_rows_written_before_encryption_keep_working(make_route, wait_route, http_triggers, server, db):
    secret = new_secret()
    trigger = await make_route("/legacy", auth={"method": "api_key", "secret": new_secret()})
    # A row as stored before encryption existed: the secret in clear.
    await db.execute(
        "UPDATE triggers SET config = jsonb_set(config, '{auth,secret}', to_jsonb($2::text)), "
        "updated_at = now() WHERE path = $1", trigger["path"], secret)
    await db.execute("SELECT pg_notify('headrace_triggers', 'main:http:' || $1)", trigger["id"])
    await wait_route(server, "POST", "/main/legacy", check=lambda t: t.config["auth"]["secret"] == secret)
    r = await server.post("/api/r/main/legacy", json={}, headers={"X-API-Key": secret})
    assert r.status == 201, await r.text()
    status, got = await http_triggers.get(trigger["path"])
    assert got["config"]["auth"]["secret"] == MASK

    # The next update that keeps it (mask) seals it.
    status, updated = await http_triggers.update(trigger["path"], {"config": got["config"]})
    assert status == 200, updated
    stored = (await _stored(db, trigger["path"]))["auth"]["secret"]
    assert is_encrypted(stored) and secret not in json.dumps(await _stored(db, trigger["path"]))
    await wait_route(server, "POST", "/main/legacy",
                     check=lambda t: t.updated_at == datetime.fromisoformat(updated["updated_at"]))
    r = await server.post("/api/r/main/legacy", json={}, headers={"X-API-Key": secret})
    assert r.status == 201, await r.text()


async def test_a_value_that_does_not_decrypt_is_503_and_logs_no_secret(
        make_route, wait_route, server, db, caplog):
    secret = new_secret()
    trigger = await make_route("/broken", auth={"method": "api_key", "secret": secret})
    stored = (await _stored(db, trigger["path"]))["auth"]["secret"]
    raw = bytearray(base64.b64decode(stored[len("enc:v1:"):]))
    raw[-1] ^= 1  # one flipped bit of the tag
    tampered = "enc:v1:" + base64.b64encode(bytes(raw)).decode()
    await db.execute(
        "UPDATE triggers SET config = jsonb_set(config, '{auth,secret}', to_jsonb($2::text)), "
        "updated_at = now() WHERE path = $1", trigger["path"], tampered)
    await db.execute("SELECT pg_notify('headrace_triggers', 'main:http:' || $1)", trigger["id"])
    from headrace.hub.http_triggers import ROUTES

    table = server.server.app[ROUTES]
    for _ in range(500):
        found = table.match("POST", "/main/broken")
        if isinstance(found, tuple) and found[0].unavailable:
            break
        await asyncio.sleep(0.01)
    r = await server.post("/api/r/main/broken", json={}, headers={"X-API-Key": secret})
    assert r.status == 503 and (await r.json())["error"]["code"] == "trigger_unavailable"
    assert "does not decrypt" in caplog.text and secret not in caplog.text


# -- listener kinds: the supervisor opens the secrets for run() ----------------------------------

class Vault(TriggerKind):
    """test-only listener that hands the config its run() received to the test."""

    id = "vaulttest"
    family = "listener"
    config_schema: ClassVar[dict] = {"type": "object", "required": ["login"], "properties": {
        "login": {"type": "object", "properties": {"user": {"type": "string"}, "password": {"type": "string"}}},
    }}
    secret_fields = ("login.password",)

    def __init__(self):
        self.seen: asyncio.Queue = asyncio.Queue()

    async def run(self, trigger, events):
        self.seen.put_nowait(trigger.config)
        await asyncio.Event().wait()


@pytest.fixture
async def vault_server(settings):
    from aiohttp.test_utils import TestClient, TestServer
    from headrace.hub.app import make_app

    kind = Vault()

    class Plugin:
        @hookimpl
        def headrace_trigger_kinds(self):
            return [kind]

    registry = build_registry(load_entry_points=False)
    registry.pm.register(Plugin(), name="vault-test-kind")
    client = TestClient(TestServer(make_app(settings, registry, worker=False),
                                   host=settings.host, port=settings.port))
    await client.start_server()
    yield client, kind
    await client.close()


async def test_listener_gets_clear_secrets_row_and_reads_do_not(vault_server, admin_token, db):
    client, kind = vault_server
    h = {"Authorization": f"Bearer {admin_token}"}
    r = await client.post("/api/w/main/scripts/create", headers=h, json={
        "path": "f/t/noop", "language": "python3", "content": "def main(**kw):\n    return 1\n"})
    assert r.status == 201, await r.text()
    secret = new_secret()
    r = await client.post("/api/w/main/triggers/vaulttest/create", headers=h, json={
        "path": "f/t/vault", "script_path": "f/t/noop",
        "config": {"login": {"user": "ada", "password": secret}}})
    assert r.status == 201, await r.text()
    assert (await r.json())["config"] == {"login": {"user": "ada", "password": MASK}}

    seen = await asyncio.wait_for(kind.seen.get(), 10)
    assert seen == {"login": {"user": "ada", "password": secret}}
    stored = await _stored(db, "f/t/vault")
    assert is_encrypted(stored["login"]["password"]) and secret not in json.dumps(stored)
    r = await client.get("/api/w/main/triggers/vaulttest/list", headers=h)
    assert [t["config"]["login"]["password"] for t in await r.json()] == [MASK]


async def test_listener_whose_secret_does_not_decrypt_records_the_error(vault_server, admin_token, db):
    client, kind = vault_server
    h = {"Authorization": f"Bearer {admin_token}"}
    r = await client.post("/api/w/main/scripts/create", headers=h, json={
        "path": "f/t/noop", "language": "python3", "content": "def main(**kw):\n    return 1\n"})
    assert r.status == 201, await r.text()
    secret = new_secret()
    r = await client.post("/api/w/main/triggers/vaulttest/create", headers=h, json={
        "path": "f/t/vault", "script_path": "f/t/noop", "config": {"login": {"password": secret}}})
    assert r.status == 201, await r.text()
    await asyncio.wait_for(kind.seen.get(), 10)

    # Sealed in another workspace: it does not decrypt here (the workspace is the associated data).
    await db.execute("INSERT INTO workspaces (id, name) VALUES ('other', 'other') ON CONFLICT DO NOTHING")
    box = client.server.app[SECRETS]
    foreign = await box.encrypt("other", secret)
    await db.execute(
        "UPDATE triggers SET config = jsonb_set(config, '{login,password}', to_jsonb($1::text)), "
        "updated_at = now() WHERE path = 'f/t/vault'", foreign)
    await db.execute("SELECT pg_notify('headrace_triggers', 'main:vaulttest:x')")
    for _ in range(500):
        last_error = await db.fetchval("SELECT last_error FROM triggers WHERE path = 'f/t/vault'")
        if last_error:
            break
        await asyncio.sleep(0.01)
    assert "SecretError" in last_error and "config.login.password" in last_error
    assert secret not in last_error and kind.seen.empty()
