"""Fixtures for the API tests: tokens with chosen scopes, and a second workspace."""
from __future__ import annotations

import asyncpg
import pytest

from headrace.core import tokens as tok
from headrace.core.db import make_engine, plain_dsn


@pytest.fixture
def token_for(db_url):
    """async token_for(scopes=[...], workspace="main", **create_token kwargs) -> a new raw token."""

    async def create(scopes=("*",), workspace="main", **kw) -> str:
        engine = make_engine(db_url)
        try:
            async with engine.begin() as conn:
                return await tok.create_token(conn, workspace, scopes=list(scopes), **kw)
        finally:
            await engine.dispose()

    return create


@pytest.fixture
def sql(db_url):
    """async sql(query, *args) -> rows, straight from this test's database."""

    async def run(query: str, *args):
        conn = await asyncpg.connect(plain_dsn(db_url))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return run


@pytest.fixture
async def other_workspace(sql, token_for) -> tuple[str, str]:
    """A second workspace `other` and an admin token of it."""
    await sql("INSERT INTO workspaces (id, name) VALUES ('other', 'Other')")
    return "other", await token_for(workspace="other")
