"""Every statement of the hot queue path, by name (procrastinate's single-SQL-module pattern).

Run through asyncpg, not SQLAlchemy: these run thousands of times a second. Invariants:
- a job is in exactly one of `queue` (waiting or running) and `completed_jobs`;
- `fence` is bumped on every claim, and a completion or retry only applies with the fence it was
  claimed with, so a job requeued from a dead worker can never be completed twice;
- NOTIFY `headrace_jobs` (payload: tag) wakes workers; `headrace_done` (payload: job id) wakes
  run-and-wait callers; `headrace_cancel` (payload: job id) reaches the worker running the job.
"""

CHANNEL_JOBS = "headrace_jobs"
CHANNEL_DONE = "headrace_done"
CHANNEL_CANCEL = "headrace_cancel"

QUEUE_INSERT_COLUMNS = """id, workspace_id, script_path, script_hash, language, args, tag, priority,
    scheduled_for, created_by, parent_job, max_retries, retry_delay_ms, timeout_s, notify_done"""

ENQUEUE = f"""
WITH j AS (
  INSERT INTO queue ({QUEUE_INSERT_COLUMNS})
  VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, COALESCE($9, now()), $10, $11, $12, $13, $14, $15)
  RETURNING tag
)
SELECT pg_notify('{CHANNEL_JOBS}', tag) FROM j
"""

# Many jobs in one statement; arrays are parallel, one element per job.
def jobs_from_arrays(first: int) -> str:
    """SELECT of queue rows from 15 parallel arrays, parameters $first.. (see JobQueue.job_columns)."""
    types = ("uuid", "text", "text", "text", "text", "jsonb", "text", "int", "timestamptz", "text",
             "uuid", "int", "int", "int", "bool")
    params = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types))
    return f"""SELECT id, ws, path, hash, lang, args, tag, prio, COALESCE(sched, now()), who, parent,
         retries, delay, tmo, notify
  FROM unnest({params})
       AS t(id, ws, path, hash, lang, args, tag, prio, sched, who, parent, retries, delay, tmo, notify)"""


ENQUEUE_MANY = f"""
WITH j AS (
  INSERT INTO queue ({QUEUE_INSERT_COLUMNS})
  {jobs_from_arrays(1)}
  RETURNING tag
)
SELECT pg_notify('{CHANNEL_JOBS}', tag) FROM (SELECT DISTINCT tag FROM j) t
"""

# Returns ClaimedJob's fields in its field order.
CLAIM = """
WITH picked AS (
  SELECT id FROM queue
  WHERE NOT running AND tag = ANY($2::text[]) AND scheduled_for <= now()
  ORDER BY priority DESC, scheduled_for
  LIMIT $3
  FOR UPDATE SKIP LOCKED
)
UPDATE queue q
SET running = true, started_at = now(), worker = $1, last_ping = now(),
    fence = q.fence + 1, attempts = q.attempts + 1
FROM picked WHERE q.id = picked.id
RETURNING q.id, q.workspace_id, q.script_path, q.script_hash, q.language, q.args, q.tag,
          q.fence, q.attempts, q.max_retries, q.timeout_s, q.created_by, q.parent_job,
          q.canceled, q.canceled_reason
"""

# Returns the worker's jobs that it still owns, with their cancel flag; a job missing from the
# answer was requeued by the zombie sweep and must be abandoned.
HEARTBEAT = """
UPDATE queue SET last_ping = now()
WHERE id = ANY($1::uuid[]) AND running AND worker = $2
RETURNING id, fence, canceled, canceled_reason
"""

_MOVE_TO_COMPLETED = """
INSERT INTO completed_jobs (id, workspace_id, script_path, script_hash, language, args, tag,
    created_at, created_by, parent_job, started_at, success, status, result, attempts, worker)
SELECT id, workspace_id, script_path, script_hash, language, args, tag, created_at, created_by,
    parent_job, started_at, success, status, result, attempts, worker
FROM moved
"""

def finish_moved(extra_ctes: str = "") -> str:
    """The common end of every statement that finishes jobs.

    Given a CTE ``moved`` (rows deleted from the queue, plus success, status and result): store them
    as completed, drop their job tokens, wake run-and-wait callers, then run ``extra_ctes``. Returns
    the ids that were completed.
    """
    return f""", ins AS ({_MOVE_TO_COMPLETED}
  RETURNING id
), tok AS (
  DELETE FROM tokens t USING moved WHERE t.job_id = moved.id
), notified AS (
  SELECT pg_notify('{CHANNEL_DONE}', id::text) FROM moved WHERE notify_done
){extra_ctes}
SELECT id, (SELECT count(*) FROM notified) AS notified FROM ins
"""


_FINISH_MOVED = finish_moved()

# Parallel arrays: id, fence, success, status, result. The job token dies with the job.
COMPLETE_MANY = f"""
WITH done AS (
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::bool[], $4::text[], $5::jsonb[])
         AS t(id, fence, success, status, result)
), moved AS (
  DELETE FROM queue q USING done
  WHERE q.id = done.id AND q.fence = done.fence AND q.running
  RETURNING q.*, done.success, done.status, done.result
){_FINISH_MOVED}"""

# A failed attempt with retries left goes back to the queue after an exponential backoff.
RETRY = """
UPDATE queue
SET running = false, worker = NULL, started_at = NULL, last_ping = NULL,
    scheduled_for = now() + make_interval(secs => retry_delay_ms * power(2, attempts - 1) / 1000.0)
WHERE id = $1 AND fence = $2 AND running
RETURNING extract(epoch FROM scheduled_for - now())::float8
"""

# Jobs whose worker stopped pinging: back to the queue, unless they have used up their restarts.
REQUEUE_ZOMBIES = f"""
WITH z AS (
  UPDATE queue
  SET running = false, worker = NULL, started_at = NULL, last_ping = NULL, scheduled_for = now()
  WHERE running AND last_ping < now() - make_interval(secs => $1)
    AND attempts <= max_retries + $2
  RETURNING id, tag
)
SELECT id, pg_notify('{CHANNEL_JOBS}', tag) FROM z
"""

# A stopping worker hands back the jobs it abandons (parallel arrays: id, fence).
REQUEUE_OWN = f"""
WITH r AS (
  UPDATE queue q
  SET running = false, worker = NULL, started_at = NULL, last_ping = NULL, scheduled_for = now()
  FROM unnest($1::uuid[], $2::int[]) AS t(id, fence)
  WHERE q.id = t.id AND q.fence = t.fence AND q.running AND q.worker = $3
  RETURNING q.id, q.tag
)
SELECT id, pg_notify('{CHANNEL_JOBS}', tag) FROM r
"""

FAIL_ZOMBIES = f"""
WITH moved AS (
  DELETE FROM queue
  WHERE running AND last_ping < now() - make_interval(secs => $1)
    AND attempts > max_retries + $2
  RETURNING *, false AS success, 'failure' AS status,
    jsonb_build_object('error', jsonb_build_object('name', 'WorkerLost',
      'message', 'the worker running this job stopped responding ' || attempts || ' times')) AS result
){_FINISH_MOVED}"""

# Flag a job as canceled; the worker running it hears it on NOTIFY (and its next heartbeat).
MARK_CANCELED = f"""
WITH c AS (
  UPDATE queue SET canceled = true, canceled_reason = $3
  WHERE id = $1 AND workspace_id = $2
  RETURNING id, running
), n AS (
  SELECT pg_notify('{CHANNEL_CANCEL}', id::text) FROM c WHERE running
)
SELECT running, (SELECT count(*) FROM n) AS notified FROM c
"""

# A canceled job that no worker holds goes straight to completed.
COMPLETE_CANCELED_WAITING = f"""
WITH moved AS (
  DELETE FROM queue WHERE id = $1 AND NOT running
  RETURNING *, false AS success, 'canceled' AS status,
    jsonb_build_object('error', jsonb_build_object('name', 'Canceled',
      'message', 'Job canceled: ' || COALESCE(canceled_reason, 'no reason given'))) AS result
){_FINISH_MOVED}"""

APPEND_LOGS = """
INSERT INTO job_logs (job_id, chunk) SELECT * FROM unnest($1::uuid[], $2::text[])
"""

GET_LOGS = """
SELECT string_agg(chunk, '' ORDER BY id) FROM job_logs WHERE job_id = $1
"""

GET_QUEUED = """
SELECT id, workspace_id, script_path, script_hash, language, args, tag, priority, scheduled_for,
       created_at, created_by, parent_job, running, started_at, worker, attempts, canceled,
       canceled_reason
FROM queue WHERE id = $1 AND workspace_id = $2
"""

GET_COMPLETED = """
SELECT id, workspace_id, script_path, script_hash, language, args, tag, created_at, created_by,
       parent_job, started_at, completed_at, success, status, result, attempts, worker
FROM completed_jobs WHERE id = $1 AND workspace_id = $2
"""

LIST_COMPLETED = """
SELECT id, script_path, script_hash, language, created_at, started_at, completed_at, success,
       status, attempts
FROM completed_jobs
WHERE workspace_id = $1 AND ($2::text IS NULL OR script_path = $2)
ORDER BY completed_at DESC LIMIT $3
"""

LIST_QUEUED = """
SELECT id, script_path, script_hash, language, created_at, scheduled_for, running, started_at,
       attempts, canceled
FROM queue
WHERE workspace_id = $1 AND ($2::text IS NULL OR script_path = $2)
ORDER BY created_at DESC LIMIT $3
"""

# A job's own API token: scoped to its workspace, deleted when the job completes, and expiring
# on its own in case the job is lost.
INSERT_JOB_TOKEN = """
INSERT INTO tokens (hash, prefix, workspace_id, owner, scopes, job_id, label, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, 'job', now() + make_interval(secs => $7))
"""

GET_SCRIPT_CONTENT = """
SELECT content, lock FROM scripts WHERE workspace_id = $1 AND hash = $2
"""
