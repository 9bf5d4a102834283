"""Alembic migrations for Headrace (one linear history). Run them with `headrace migrate`."""
