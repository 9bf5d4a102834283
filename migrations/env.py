"""Alembic environment: always run with a connection handed in by headrace.core.migrate."""
from alembic import context

from headrace.core.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `headrace migrate`, which supplies the connection")

context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
