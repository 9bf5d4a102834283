"""Statements of the event ledger's write path (one statement per batch, with the jobs)."""

from .queue_sql import CHANNEL_JOBS, QUEUE_INSERT_COLUMNS, finish_moved, jobs_from_arrays

# Events and their jobs in one statement (one round trip, atomic): parallel arrays, one element per
# event ($1..$11), then the jobs' 15 arrays ($12..). A repeated (workspace, source, dedup_key) inserts
# no event, and so no job. Returns the ids of the events inserted.
INSERT_EVENTS_AND_JOBS = f"""
WITH ev AS (
  INSERT INTO events (id, workspace_id, source, trigger_id, kind, script_path, payload, dedup_key,
                      job_id, status, replay_of)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[],
                       $7::jsonb[], $8::text[], $9::uuid[], $10::text[], $11::uuid[])
  ON CONFLICT (workspace_id, source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
  RETURNING id, job_id
), jobs AS (
  INSERT INTO queue ({QUEUE_INSERT_COLUMNS})
  SELECT j.* FROM ({jobs_from_arrays(12)}) j
  WHERE j.id IN (SELECT job_id FROM ev)
  RETURNING tag
), woken AS (
  SELECT pg_notify('{CHANNEL_JOBS}', tag) FROM (SELECT DISTINCT tag FROM jobs) t
)
SELECT id, (SELECT count(*) FROM woken) AS woken FROM ev
"""

# The first event's job for keys that were already taken.
EXISTING_BY_KEY = """
SELECT e.workspace_id, e.source, e.dedup_key, e.id, e.job_id, e.status
FROM events e
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(ws, source, key)
  ON e.workspace_id = k.ws AND e.source = k.source AND e.dedup_key = k.key
"""

LATEST_SCRIPT = """
SELECT path, hash, language, schema FROM scripts
WHERE workspace_id = $1 AND path = $2 AND NOT archived
ORDER BY created_at DESC LIMIT 1
"""

SCRIPT_BY_HASH = """
SELECT path, hash, language, schema FROM scripts WHERE workspace_id = $1 AND hash = $2
"""

SAVE_TRIGGER_STATE = """
UPDATE triggers SET state = $2::jsonb WHERE id = $1
"""

# Listener leases: a trigger runs in the one server holding its unexpired lease.
ACQUIRE_LEASE = """
UPDATE triggers SET lease_owner = $2, lease_expires = now() + make_interval(secs => $3)
WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires < now())
RETURNING id
"""

RENEW_LEASES = """
UPDATE triggers SET lease_expires = now() + make_interval(secs => $3)
WHERE id = ANY($1::uuid[]) AND lease_owner = $2
RETURNING id
"""

RELEASE_LEASES = """
UPDATE triggers SET lease_owner = NULL, lease_expires = NULL
WHERE id = ANY($1::uuid[]) AND lease_owner = $2
"""

RECORD_TRIGGER_ERROR = """
UPDATE triggers SET last_error = $2, last_error_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END
WHERE id = $1
"""

# -- reading the ledger, and acting on a trigger's suspended events ------------------------------

EVENT_COLUMNS = """id, workspace_id, source, trigger_id, kind, script_path, received_at, payload, dedup_key,
    job_id, status, replay_of"""

GET_EVENT = f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND id = $2"

LIST_TRIGGER_EVENTS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE workspace_id = $1 AND trigger_id = $2 AND ($3::text IS NULL OR status = $3)
ORDER BY received_at DESC LIMIT $4
"""

LIST_EVENTS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE workspace_id = $1 AND ($2::text IS NULL OR script_path = $2) AND ($3::text IS NULL OR kind = $3)
  AND ($4::text IS NULL OR status = $4)
ORDER BY received_at DESC LIMIT $5
"""

# Suspended jobs wait with scheduled_for = SUSPENDED_UNTIL; resuming makes them due now.
RESUME_SUSPENDED = """
WITH j AS (
  UPDATE queue q SET scheduled_for = now()
  FROM events e
  WHERE e.workspace_id = $1 AND e.trigger_id = $2 AND e.status = 'suspended'
    AND q.id = e.job_id AND NOT q.running AND q.scheduled_for >= $3
  RETURNING q.id, q.tag
), ev AS (
  UPDATE events SET status = 'queued' FROM j WHERE events.job_id = j.id
)
SELECT id, tag FROM j
"""

CANCEL_SUSPENDED = f"""
WITH moved AS (
  DELETE FROM queue q USING events e
  WHERE e.workspace_id = $1 AND e.trigger_id = $2 AND e.status = 'suspended'
    AND q.id = e.job_id AND NOT q.running AND q.scheduled_for >= $3
  RETURNING q.*, false AS success, 'canceled' AS status,
    jsonb_build_object('error', jsonb_build_object('name', 'Canceled',
      'message', 'Job canceled: ' || $4::text)) AS result
){finish_moved(", ev AS (UPDATE events SET status = 'canceled' FROM ins WHERE events.job_id = ins.id)")}"""

# Oldest first, a bounded batch per statement so that a large purge never holds long locks.
# Events whose job still waits suspended are kept: they are the only handle on that job.
PURGE_EVENTS = """
DELETE FROM events WHERE id IN (
  SELECT id FROM events
  WHERE received_at < now() - make_interval(secs => $1) AND status <> 'suspended'
  ORDER BY received_at LIMIT $2
)
"""
