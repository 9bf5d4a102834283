"""Apply Alembic migrations. Idempotent, and safe when several processes start at once."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

import headrace.migrations

# Any constant: serialises concurrent `headrace migrate` / start-ups on one database.
MIGRATION_LOCK = 7_245_117_001


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(headrace.migrations.__file__).parent))
    return cfg


def _upgrade(sync_conn, revision: str) -> None:
    sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def _current(sync_conn) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(sync_conn).get_current_revision()


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
