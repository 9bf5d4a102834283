"""Table definitions (SQLAlchemy Core). Migrations in headrace.migrations create exactly these.

The queue tables are read and written by hand-written SQL in :mod:`headrace.core.queue_sql`;
everything else goes through these Table objects.
"""
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    BigInteger,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

now = func.now()

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    # The workspace data key, wrapped (AES-GCM) by the server's master key.
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
)

tokens = Table(
    "tokens",
    metadata,
    # SHA-256 of the token: the token itself is shown once and never stored.
    Column("hash", Text, primary_key=True),
    Column("prefix", Text, nullable=False),
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, nullable=False, server_default=""),
    Column("owner", Text, nullable=False, server_default="admin"),
    Column("scopes", ARRAY(Text), nullable=False),
    # A webhook token may be limited to one script path.
    Column("script_path", Text, nullable=True),
    # A job token lives as long as its job.
    Column("job_id", UUID(as_uuid=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
)
Index("tokens_job_id", tokens.c.job_id, postgresql_where=text("job_id IS NOT NULL"))

scripts = Table(
    "scripts",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("hash", Text, primary_key=True),
    Column("path", Text, nullable=False),
    Column("parent_hash", Text, nullable=True),
    Column("language", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("summary", Text, nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    Column("schema", JSONB, nullable=False),
    Column("lock", Text, nullable=True),
    Column("created_by", Text, nullable=False),
    Column("archived", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
)
Index("scripts_by_path", scripts.c.workspace_id, scripts.c.path, scripts.c.created_at.desc())

# The hot queue: only jobs waiting or running. Finished jobs move to completed_jobs.
queue = Table(
    "queue",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("script_path", Text, nullable=True),
    Column("script_hash", Text, nullable=True),
    Column("language", Text, nullable=False),
    Column("args", JSONB, nullable=False),
    Column("tag", Text, nullable=False, server_default="default"),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("scheduled_for", DateTime(timezone=True), nullable=False, server_default=now),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("created_by", Text, nullable=False, server_default="admin"),
    Column("parent_job", UUID(as_uuid=True), nullable=True),
    Column("running", Boolean, nullable=False, server_default=text("false")),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("worker", Text, nullable=True),
    Column("last_ping", DateTime(timezone=True), nullable=True),
    # Bumped every time the job is (re)claimed: a completion must present the fence it claimed with.
    Column("fence", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_retries", Integer, nullable=False, server_default="0"),
    Column("retry_delay_ms", Integer, nullable=False, server_default="1000"),
    Column("timeout_s", Integer, nullable=True),
    Column("canceled", Boolean, nullable=False, server_default=text("false")),
    Column("canceled_reason", Text, nullable=True),
    Column("notify_done", Boolean, nullable=False, server_default=text("false")),
)
Index(
    "queue_ready",
    queue.c.tag,
    queue.c.priority.desc(),
    queue.c.scheduled_for,
    postgresql_where=text("NOT running"),
)
Index("queue_running", queue.c.worker, postgresql_where=text("running"))

completed_jobs = Table(
    "completed_jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("script_path", Text, nullable=True),
    Column("script_hash", Text, nullable=True),
    Column("language", Text, nullable=False),
    Column("args", JSONB, nullable=False),
    Column("tag", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("parent_job", UUID(as_uuid=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("success", Boolean, nullable=False),
    Column("status", Text, nullable=False),  # success | failure | canceled
    Column("result", JSONB, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("worker", Text, nullable=True),
)
Index("completed_by_ws", completed_jobs.c.workspace_id, completed_jobs.c.completed_at.desc())

job_logs = Table(
    "job_logs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("chunk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
)
Index("job_logs_by_job", job_logs.c.job_id, job_logs.c.id)

# One table for triggers of every kind; the kind's plugin validates `config` against its JSON Schema.
triggers = Table(
    "triggers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("script_path", Text, nullable=False),
    Column("config", JSONB, nullable=False),
    Column("mode", Text, nullable=False, server_default="enabled"),  # enabled|disabled|suspended|capture
    Column("error_handler_path", Text, nullable=True),
    Column("error_handler_args", JSONB, nullable=True),
    Column("summary", Text, nullable=False, server_default=""),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", DateTime(timezone=True), nullable=True),
    # Listener triggers run in exactly one server at a time: the one holding the lease.
    Column("lease_owner", Text, nullable=True),
    Column("lease_expires", DateTime(timezone=True), nullable=True),
    # Kind-owned state that must survive restarts (a schedule's last tick, a cursor...).
    Column("state", JSONB, nullable=True),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
)
Index("triggers_by_path", triggers.c.workspace_id, triggers.c.kind, triggers.c.path, unique=True)

# The event ledger: every accepted event, written in the same transaction as its job.
# `source` scopes dedup keys: "trigger:<id>" for a trigger, "script:<path>" for a plain webhook.
events = Table(
    "events",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("trigger_id", UUID(as_uuid=True), nullable=True),
    Column("kind", Text, nullable=False),
    Column("script_path", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("payload", JSONB, nullable=False),
    Column("dedup_key", Text, nullable=True),
    Column("job_id", UUID(as_uuid=True), nullable=True),
    Column("status", Text, nullable=False),  # queued | captured | suspended | replayed ...
    Column("replay_of", UUID(as_uuid=True), nullable=True),
)
Index(
    "events_dedup", events.c.workspace_id, events.c.source, events.c.dedup_key, unique=True,
    postgresql_where=text("dedup_key IS NOT NULL"),
)
Index("events_by_trigger", events.c.trigger_id, events.c.received_at.desc())
Index("events_by_script", events.c.workspace_id, events.c.script_path, events.c.received_at.desc())
Index("events_by_received", events.c.received_at)
Index("events_by_job", events.c.job_id, postgresql_where=text("job_id IS NOT NULL"))

# Windmill-compatible variables. A secret's value is stored encrypted ("enc:v1:...", core/secrets.py).
variables = Table(
    "variables",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("is_secret", Boolean, nullable=False, server_default=text("false")),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
)
# The log masker reads a workspace's secrets on its hot path.
Index("variables_secrets", variables.c.workspace_id, postgresql_where=text("is_secret"))

# Windmill-compatible resources (any JSON value); a script's state is a resource of type "state".
resources = Table(
    "resources",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("value", JSONB, nullable=False),
    Column("resource_type", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
)
