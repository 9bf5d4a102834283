"""The schedule kind's own statements (everything else goes through the event ledger)."""

GET_STATE = "SELECT state FROM triggers WHERE id = $1"

# A tick that did not run: a ledger row with no job. The dedup key is the tick's, so a tick is
# either run or skipped, once, whichever server got there first.
INSERT_SKIPPED = """
INSERT INTO events (id, workspace_id, source, trigger_id, kind, script_path, payload, dedup_key, status)
VALUES ($1, $2, $3, $4, 'schedule', $5, $6::jsonb, $7, 'skipped')
ON CONFLICT (workspace_id, source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
"""

# The schedule's oldest job still in the queue (waiting or running), not counting held or suspended
# jobs ($2: the hold date).
ACTIVE_JOB = """
SELECT q.id FROM queue q JOIN events e ON e.job_id = q.id
WHERE e.trigger_id = $1 AND q.scheduled_for < $2
ORDER BY e.dedup_key LIMIT 1
"""

# overlap=queue: when none of the schedule's jobs is active, let the oldest held one run.
RELEASE_HELD = """
WITH mine AS (
  SELECT q.id, q.scheduled_for, e.dedup_key FROM queue q JOIN events e ON e.job_id = q.id
  WHERE e.trigger_id = $1 AND q.scheduled_for < $3
), nxt AS (
  SELECT id FROM mine
  WHERE scheduled_for >= $2 AND NOT EXISTS (SELECT 1 FROM mine WHERE scheduled_for < $2)
  ORDER BY dedup_key LIMIT 1
), released AS (
  UPDATE queue q SET scheduled_for = now() FROM nxt WHERE q.id = nxt.id AND NOT q.running
  RETURNING q.tag
), woken AS (
  SELECT pg_notify('headrace_jobs', tag) FROM released
)
SELECT (SELECT count(*) FROM mine WHERE scheduled_for >= $2) - (SELECT count(*) FROM released) AS held,
       (SELECT count(*) FROM woken) AS woken
"""

HELD_JOBS = """
SELECT q.id FROM queue q JOIN events e ON e.job_id = q.id
WHERE e.trigger_id = $1 AND q.scheduled_for >= $2 AND q.scheduled_for < $3 AND NOT q.running
"""

GET_MODE = "SELECT mode FROM triggers WHERE id = $1"

# Ledger rows of one schedule that did not run, newest first.
LIST_SKIPPED = """
SELECT id, received_at, dedup_key, payload FROM events
WHERE trigger_id = $1 AND status = 'skipped'
ORDER BY received_at DESC, dedup_key DESC LIMIT $2
"""
