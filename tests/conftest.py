"""Test fixtures: a real PostgreSQL, one migrated template per xdist worker, a fresh clone per test.

Set HEADRACE_TEST_PG to point at another server (default: postgresql://postgres@127.0.0.1:5432/postgres).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from headrace.core import tokens as tok
from headrace.core.config import Settings
from headrace.core.db import make_engine
from headrace.core.migrate import migrate

ADMIN_PG = os.environ.get("HEADRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw")


def db_url_for(name: str) -> str:
    base, _, _ = ADMIN_PG.rpartition("/")
    return f"{base}/{name}"


async def _admin(sqls: list[str]) -> None:
    conn = await asyncpg.connect(ADMIN_PG)
    try:
        for s in sqls:
            await conn.execute(s)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db() -> str:
    """A migrated database that every test clones (CREATE DATABASE ... TEMPLATE)."""
    name = f"hr_tpl_{_worker_id()}_{os.getpid()}"

    async def build():
        await _admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'])
        engine = make_engine(db_url_for(name))
        await migrate(engine)
        await engine.dispose()

    asyncio.run(build())
    yield name
    asyncio.run(_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


@pytest.fixture
def db_url(template_db) -> str:
    """A fresh, migrated database of this test's own."""
    name = f"hr_t_{_worker_id()}_{os.getpid()}_{next(_counter)}"
    asyncio.run(_admin([f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"']))
    yield db_url_for(name)
    asyncio.run(_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(db_url) -> Settings:
    port = free_port()
    return Settings(
        database_url=db_url, host="127.0.0.1", port=port, worker_slots=4,
        heartbeat_s=0.5, zombie_after_s=3.0, kill_grace_s=1.0,
    )


async def make_token(db_url: str, workspace: str = "main", **kw) -> str:
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            return await tok.create_token(conn, workspace, scopes=kw.pop("scopes", ["*"]), **kw)
    finally:
        await engine.dispose()


@pytest.fixture
def token_for(db_url):
    """async token_for(scopes=[...], workspace="main", **create_token kwargs) -> a new raw token."""

    async def create(scopes=("*",), workspace="main", **kw) -> str:
        return await make_token(db_url, workspace, scopes=list(scopes), **kw)

    return create


@pytest.fixture
async def admin_token(db_url) -> str:
    return await make_token(db_url)


@pytest.fixture
async def server(settings):
    """A running Headrace server (API + standalone worker) on a real port, as an aiohttp TestClient."""
    from headrace.hub.app import make_app

    app = make_app(settings)
    client = TestClient(TestServer(app, host=settings.host, port=settings.port))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
def api(server, admin_token):
    """Helpers bound to the running server and an admin token."""
    return Api(server, admin_token)


class Api:
    def __init__(self, client: TestClient, token: str, workspace: str = "main"):
        self.client = client
        self.token = token
        self.ws = workspace

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, tail: str) -> str:
        return f"/api/w/{self.ws}/{tail.lstrip('/')}"

    async def post(self, tail: str, json=None, **kw):
        return await self.client.post(self.url(tail), json=json, headers=kw.pop("headers", self.headers), **kw)

    async def get(self, tail: str, **kw):
        return await self.client.get(self.url(tail), headers=kw.pop("headers", self.headers), **kw)

    async def create_script(self, path: str, content: str, language: str = "python3") -> str:
        r = await self.post("scripts/create", {"path": path, "content": content, "language": language})
        assert r.status == 201, await r.text()
        return await r.text()

    async def run_wait(self, path: str, args: dict | None = None):
        r = await self.post(f"jobs/run_wait_result/p/{path}", args or {})
        return r.status, await r.json()

    async def run_async(self, path: str, args: dict | None = None) -> str:
        r = await self.post(f"jobs/run/p/{path}", args or {})
        assert r.status == 201, await r.text()
        return await r.text()

    async def wait_job(self, job_id: str, timeout: float = 30.0) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            r = await self.get(f"jobs_u/get/{job_id}")
            body = await r.json()
            if body.get("type") == "CompletedJob":
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} did not complete in {timeout} s")


def headrace_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 60):
    """Run the installed `headrace` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "headrace.hub.cli", *args], env=full_env, capture_output=True,
        text=True, timeout=timeout, check=check,
    )


# -- a `headrace serve` subprocess (appended for the plugin, CLI and embedded-postgres tests) ------

class ServerProcess:
    """`headrace serve` in a child process, on a free port; stopped with SIGTERM like a real deployment."""

    def __init__(self, python: str, args: list[str], env: dict, log_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [python, "-m", "headrace.hub.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not healthy after {timeout} s:\n{self.log()}")

    def request(self, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None):
        """(status, parsed JSON or text) of one request."""
        import json
        import urllib.error
        import urllib.request

        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type", "")
        return status, (json.loads(text) if "json" in ctype else text)

    def stop(self, timeout: float = 20.0) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def spawn_server(tmp_path):
    """Start `headrace serve` subprocesses: spawn_server(env=..., python=..., args=[...]); all stopped at teardown."""
    started: list[ServerProcess] = []

    def spawn(env: dict | None = None, python: str | None = None, args: list[str] | None = None) -> ServerProcess:
        full_env = {**os.environ, **(env or {})}
        for name, value in list(full_env.items()):
            if value is None:
                del full_env[name]
        srv = ServerProcess(str(python or sys.executable), args or [], full_env,
                            tmp_path / f"serve-{len(started)}.log")
        started.append(srv)
        return srv

    yield spawn
    for srv in started:
        srv.stop()
