"""Settings read from the environment (and CLI flags, which override them)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "headrace"


@dataclass
class Settings:
    # postgresql://user@host:port/db; None means "start the embedded PostgreSQL in data_dir".
    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    master_key: str | None = None  # base64 of 32 bytes; generated into data_dir when unset
    host: str = "127.0.0.1"
    port: int = 8000
    # The URL jobs use to call back into the API (BASE_INTERNAL_URL); defaults to host:port.
    base_url: str | None = None
    worker_slots: int = 4
    # Largest request body accepted by the API, in bytes.
    max_body_bytes: int = 10 * 1024 * 1024
    heartbeat_s: float = 2.0
    # A running job whose worker has not pinged for this long is requeued.
    zombie_after_s: float = 30.0
    kill_grace_s: float = 3.0
    # On SIGTERM a worker stops claiming and lets running jobs finish for this long; the rest are
    # killed and handed back to the queue.
    shutdown_grace_s: float = 10.0
    # Event ledger rows older than this many days are deleted (0 keeps them forever).
    event_retention_days: float = 30.0
    # Installed dependencies and compiled scripts, shared by jobs; None means data_dir/cache.
    cache_dir: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        s = cls()
        s.database_url = env.get("DATABASE_URL") or None
        if env.get("HEADRACE_DATA_DIR"):
            s.data_dir = Path(env["HEADRACE_DATA_DIR"])
        s.master_key = env.get("HEADRACE_MASTER_KEY") or None
        s.base_url = env.get("HEADRACE_BASE_URL") or None
        if env.get("HEADRACE_CACHE_DIR"):
            s.cache_dir = Path(env["HEADRACE_CACHE_DIR"])
        for name, attr, conv in (
            ("HEADRACE_HOST", "host", str),
            ("HEADRACE_PORT", "port", int),
            ("HEADRACE_WORKER_SLOTS", "worker_slots", int),
            ("HEADRACE_HEARTBEAT_S", "heartbeat_s", float),
            ("HEADRACE_ZOMBIE_AFTER_S", "zombie_after_s", float),
            ("HEADRACE_MAX_BODY_BYTES", "max_body_bytes", int),
            ("HEADRACE_EVENT_RETENTION_DAYS", "event_retention_days", float),
            ("HEADRACE_SHUTDOWN_GRACE_S", "shutdown_grace_s", float),
        ):
            if env.get(name):
                setattr(s, attr, conv(env[name]))
        return s

    @property
    def job_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @property
    def api_base_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")
