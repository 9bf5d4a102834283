"""Fixtures for the API tests: tokens with chosen scopes, and a second workspace."""
from __future__ import annotations

import asyncpg
import pytest

from headrace.core.db import plain_dsn


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
