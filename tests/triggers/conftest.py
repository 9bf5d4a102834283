"""Shared fixtures for trigger tests (others may append below)."""
from __future__ import annotations

import dataclasses
import socket

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

ECHO_SCRIPT = '''
def main(**kw):
    print("echo:", sorted(kw))
    return kw
'''


class Triggers:
    """The generic trigger routes for one kind, bound to an Api helper."""

    def __init__(self, api, kind: str):
        self.api = api
        self.kind = kind

    async def create(self, body: dict):
        r = await self.api.post(f"triggers/{self.kind}/create", body)
        return r.status, await r.json()

    async def list(self, **query):
        r = await self.api.get(f"triggers/{self.kind}/list", params=query)
        return r.status, await r.json()

    async def get(self, path: str):
        r = await self.api.get(f"triggers/{self.kind}/get/{path}")
        return r.status, await r.json()

    async def update(self, path: str, body: dict):
        r = await self.api.post(f"triggers/{self.kind}/update/{path}", body)
        return r.status, await r.json()

    async def setmode(self, path: str, mode: str):
        r = await self.api.post(f"triggers/{self.kind}/setmode/{path}", {"mode": mode})
        return r.status, await r.json()

    async def delete(self, path: str):
        r = await self.api.client.delete(self.api.url(f"triggers/{self.kind}/delete/{path}"),
                                         headers=self.api.headers)
        return r.status, await r.json()


@pytest.fixture
def http_triggers(api) -> Triggers:
    return Triggers(api, "http")


@pytest.fixture
async def echo_script(api) -> str:
    """A Python script returning its arguments (``def main(**kw)``), at f/t/echo."""
    await api.create_script("f/t/echo", ECHO_SCRIPT)
    return "f/t/echo"


@pytest.fixture
async def make_route(http_triggers, echo_script):
    """make_route(route_path, path=..., **config) -> the created trigger (201 asserted)."""
    counter = iter(range(1000))

    async def make(route_path: str, *, path: str | None = None, script_path: str | None = None,
                   mode: str | None = None, **config):
        body = {"path": path or f"f/t/route{next(counter)}", "script_path": script_path or echo_script,
                "config": {"route_path": route_path, **config}}
        if mode:
            body["mode"] = mode
        status, trigger = await http_triggers.create(body)
        assert status == 201, trigger
        return trigger

    return make


@pytest.fixture
async def second_server(settings):
    """Another running server (API only) over the same database, on its own port."""
    from headrace.hub.app import make_app

    other = dataclasses.replace(settings, port=free_port())
    client = TestClient(TestServer(make_app(other, worker=False), host=other.host, port=other.port))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def db(db_url):
    """A plain asyncpg connection to the test database, for reading the ledger."""
    from headrace.core.db import plain_dsn

    conn = await asyncpg.connect(plain_dsn(db_url))
    yield conn
    await conn.close()


@pytest.fixture
def wait_route():
    """wait_route(client, method, tail, check=lambda trigger: ..., gone=False): until that server's route
    table (reloaded on NOTIFY) serves ``tail`` (like "/main/hooks/1") as expected; fails after 10 s."""
    import asyncio

    from headrace.hub.http_triggers import ROUTES

    async def wait(client, method: str, tail: str, check=None, gone: bool = False, timeout: float = 10.0):
        table = client.server.app[ROUTES]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = table.match(method, tail)
            served = isinstance(found, tuple)
            if gone and not served:
                return
            if not gone and served and (check is None or check(found[0].trigger)):
                return found[0].trigger
            if loop.time() > deadline:
                raise AssertionError(f"route {method} {tail} not {'gone' if gone else 'served'} after {timeout} s")
            await asyncio.sleep(0.01)

    return wait
