"""Database connections: a SQLAlchemy async engine for CRUD and a raw asyncpg pool for the queue."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def plain_dsn(url: str) -> str:
    """postgresql://... for asyncpg, whatever driver suffix the URL carries."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme != "postgresql":
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {parts.scheme}://")
    return urlunsplit((scheme,) + tuple(parts[1:]))


def sqlalchemy_url(url: str) -> str:
    return plain_dsn(url).replace("postgresql://", "postgresql+asyncpg://", 1)


def make_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=5)


# PostgreSQL's jsonb cannot hold U+0000. A job result or an event body that contains it must not make
# its whole batch fail (and block the others), so NUL becomes U+FFFD. The look-behind keeps an escaped
# backslash followed by "u0000" (an even run of backslashes) as it is.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def encode_json(value) -> str:
    try:
        text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an integer beyond 64 bits, which json handles
        text = json.dumps(value, default=str)
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(r"\1\\ufffd", text)
    return text


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=encode_json, decoder=json.loads, schema="pg_catalog")


async def make_pool(url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        plain_dsn(url), min_size=min_size, max_size=max_size, init=_init_connection
    )


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(plain_dsn(url))
    await _init_connection(conn)
    return conn


@dataclass
class Database:
    """Both handles on one database, opened and closed together."""

    url: str
    engine: AsyncEngine
    pool: asyncpg.Pool

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> "Database":
        engine = make_engine(url)
        pool = await make_pool(url, max_size=pool_size)
        return cls(url, engine, pool)

    async def close(self) -> None:
        await self.pool.close()
        await self.engine.dispose()
