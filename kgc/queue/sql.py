"""The worker's statements, each one round trip.

The jobs table, its triggers (the events timeline, the per-queue counters, the
notifications) and its SQL functions are procrastinate's; these statements only
read and write its columns.
"""

from __future__ import annotations

# Registration: procrastinate's worker row (its id is the fencing token of every claim)
# and the process's own description, in one statement.
REGISTER = """
WITH worker AS (
    INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id, last_heartbeat
)
INSERT INTO kgc_workerprocess (worker_id, host, pid, queues, concurrency, started_at, duties, reported_at)
SELECT id, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, last_heartbeat, %(duties)s, last_heartbeat FROM worker
RETURNING worker_id
"""

# The heartbeat, and the duties' states for the console and the health checks. No row:
# the worker was declared dead and removed meanwhile, and must register again.
HEARTBEAT = """
WITH beat AS (
    UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = %(worker_id)s RETURNING id
), report AS (
    UPDATE kgc_workerprocess SET duties = %(duties)s, reported_at = now()
     WHERE worker_id IN (SELECT id FROM beat)
)
SELECT id FROM beat
"""

# The process row goes with it (ON DELETE CASCADE); its jobs are finished or put back first.
UNREGISTER = "DELETE FROM procrastinate_workers WHERE id = %(worker_id)s"

CLAIM = """
SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at, queue_name, attempts, worker_id
  FROM kgc_fetch_jobs(%(queues)s::varchar[], %(wants)s::int[], %(worker_id)s, %(limited)s::varchar[],
                      %(limits)s::int[], %(windows)s::float8[])
"""

# Outcomes of many jobs in one statement. An outcome is accepted only from the attempt
# that claimed the job: the job is still running (``doing``), with the attempt count it
# was claimed with, and still the claiming worker's (or nobody's, if that worker was
# declared dead and nobody rescued the job yet). A job rescued meanwhile is a new
# attempt (its ``attempts`` went up), so the old attempt's late outcome matches nothing
# and is refused. Failure records are written for accepted outcomes only, in the same
# statement, and so are the return values of succeeded jobs (kgc/results.py) and the run
# times of jobs that succeeded or failed for good (the metrics' histogram). A job going
# back for a retry keeps its queueing lock only when no other
# waiting job holds it (and only the first of several in one batch); with
# ``keep_locks`` false it goes back without (the fallback after a conflict with a job
# enqueued concurrently).
FINISH = """
WITH outcome AS (
    SELECT *
      FROM unnest(%(ids)s::bigint[], %(workers)s::bigint[], %(attempts)s::int[],
                  %(statuses)s::procrastinate_job_status[], %(retry_at)s::timestamptz[], %(durations)s::float8[])
           AS o(id, worker_id, attempts, status, retry_at, seconds)
), retrying AS (
    -- The attempt that holds the job, matched as in ``finished``: an old attempt's outcome
    -- of the same job in the same batch must not add a second row for it.
    SELECT job.id,
           row_number() OVER (PARTITION BY job.queueing_lock ORDER BY job.id) AS nth
      FROM procrastinate_jobs AS job
      JOIN outcome ON outcome.id = job.id
     WHERE outcome.status = 'todo' AND job.queueing_lock IS NOT NULL
       AND job.status = 'doing'
       AND job.attempts = outcome.attempts
       AND (job.worker_id = outcome.worker_id OR job.worker_id IS NULL)
), finished AS (
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN outcome.status = 'todo' AND job.abort_requested THEN 'failed'
                         ELSE outcome.status END::procrastinate_job_status,
           attempts = job.attempts + 1,
           abort_requested = false,
           scheduled_at = CASE WHEN outcome.status = 'todo' THEN outcome.retry_at ELSE job.scheduled_at END,
           -- Finished or back in the queue, the job is no longer its worker's: removing a worker
           -- then touches only the jobs it is running (kgc_jobs_worker_idx). Which worker ran
           -- this attempt is kept in a column of ours, for the console (no index, no key).
           worker_id = NULL,
           kgc_worker_id = outcome.worker_id,
           queueing_lock = CASE
               WHEN outcome.status <> 'todo' THEN job.queueing_lock
               WHEN NOT %(keep_locks)s OR coalesce((SELECT nth FROM retrying WHERE retrying.id = job.id), 1) > 1
                   THEN NULL
               ELSE kgc_lock_if_free(job.id, job.queueing_lock)
           END
      FROM outcome
     WHERE job.id = outcome.id
       AND job.status = 'doing'
       AND job.attempts = outcome.attempts
       AND (job.worker_id = outcome.worker_id OR job.worker_id IS NULL)
    RETURNING job.id, job.queue_name, job.task_name, job.status, job.attempts
), failures AS (
    INSERT INTO kgc_jobfailure
           (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry, failed_at)
    SELECT failure.job_id, finished.queue_name, finished.task_name, failure.attempt, failure.exception_type,
           failure.message, failure.traceback, finished.status = 'todo', failure.failed_at
      FROM unnest(%(failed_ids)s::bigint[], %(failed_attempts)s::int[], %(failed_types)s::text[],
                  %(failed_messages)s::text[], %(failed_tracebacks)s::text[], %(failed_at)s::timestamptz[])
           AS failure(job_id, attempt, exception_type, message, traceback, failed_at)
      JOIN finished ON finished.id = failure.job_id AND finished.attempts = failure.attempt
), timed AS (
    -- The run times the worker measured, per queue and bucket (kgc_joboutcomecount's timed
    -- rows); the outcomes themselves are counted by the jobs table's trigger.
    INSERT INTO kgc_joboutcomecount (queue_name, outcome, le, jobs, seconds)
    SELECT finished.queue_name, 'timed',
           coalesce((SELECT min(bound) FROM unnest(kgc_job_duration_bounds()) AS bound WHERE bound >= run.seconds),
                    'Infinity'),
           count(*), sum(run.seconds)
      FROM outcome AS run
      JOIN finished ON finished.id = run.id AND finished.attempts = run.attempts + 1
     WHERE finished.status IN ('succeeded', 'failed')
     GROUP BY 1, 3
), results AS (
    INSERT INTO kgc_jobresult (job_id, value, recorded_at)
    SELECT result.job_id, result.value, now()
      FROM unnest(%(result_ids)s::bigint[], %(result_attempts)s::int[], %(result_values)s::jsonb[])
           AS result(job_id, attempt, value)
      JOIN finished ON finished.id = result.job_id AND finished.attempts = result.attempt
        ON CONFLICT (job_id) DO UPDATE SET value = excluded.value, recorded_at = excluded.recorded_at
)
SELECT id FROM finished
"""

# Jobs this worker's registration holds in the database but not in memory: a claim whose
# answer was lost (its connection severed after the server committed it). They never
# started: back to waiting, as they were, with no attempt used.
RECONCILE = """
UPDATE procrastinate_jobs AS job
   SET status = 'todo', worker_id = NULL, queueing_lock = kgc_lock_if_free(job.id, job.queueing_lock)
 WHERE job.worker_id = %(worker_id)s AND job.status = 'doing' AND NOT (job.id = ANY(%(held)s::bigint[]))
RETURNING job.id
"""

# A job whose task the worker does not know (a rolling deploy: an older worker claimed it)
# goes back to its queue with no attempt used, to be claimed again after ``delay`` seconds,
# by a worker that knows the task. It fails, saying why, once ``grace`` seconds have passed
# since a worker first found it unknown (that sighting's failure record, the only one
# written until then), or at once if its abort was requested. Matched like FINISH.
PUT_BACK_UNKNOWN = """
WITH sighting AS (
    SELECT job.id, job.abort_requested,
           (SELECT min(failure.failed_at) FROM kgc_jobfailure AS failure
             WHERE failure.job_id = job.id AND failure.attempt = job.attempts + 1
               AND failure.exception_type = 'TaskNotFound') AS first_seen
      FROM procrastinate_jobs AS job
     WHERE job.id = %(job_id)s AND job.status = 'doing' AND job.attempts = %(attempts)s
       AND (job.worker_id = %(worker_id)s OR job.worker_id IS NULL)
       FOR UPDATE
), decided AS (
    SELECT sighting.*,
           abort_requested OR coalesce(first_seen, now()) <= now() - make_interval(secs => %(grace)s) AS fails
      FROM sighting
), returned AS (
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN decided.fails THEN 'failed' ELSE 'todo' END::procrastinate_job_status,
           attempts = job.attempts + CASE WHEN decided.fails THEN 1 ELSE 0 END,
           scheduled_at = CASE WHEN decided.fails THEN job.scheduled_at
                               ELSE now() + make_interval(secs => %(delay)s) END,
           worker_id = NULL,
           abort_requested = false,
           queueing_lock = CASE WHEN decided.fails THEN job.queueing_lock
                                ELSE kgc_lock_if_free(job.id, job.queueing_lock) END
      FROM decided
     WHERE job.id = decided.id
    RETURNING job.id, job.queue_name, job.task_name, job.status, decided.first_seen
), recorded AS (
    INSERT INTO kgc_jobfailure
           (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry, failed_at)
    SELECT id, queue_name, task_name, %(attempts)s + 1, 'TaskNotFound',
           CASE WHEN status = 'failed' THEN %(final_message)s ELSE %(message)s END, '', status = 'todo', now()
      FROM returned
     WHERE status = 'failed' OR first_seen IS NULL
)
SELECT id, status::text AS status, extract(epoch FROM now() - first_seen) AS unknown_for FROM returned
"""

# The server processes of severed statements: ended, so that none of them can still commit.
TERMINATE_BACKENDS = "SELECT pg_terminate_backend(pid) FROM unnest(%(pids)s::int[]) AS severed(pid)"
BACKENDS_ALIVE = "SELECT count(*) AS alive FROM pg_stat_activity WHERE pid = ANY(%(pids)s::int[])"

# A job still running when the shutdown timeout ends goes back to its queue as a new
# attempt (or fails, if its abort was requested or it is out of attempts), with a failure
# record saying why.
REQUEUE = """
WITH requeued AS (
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN job.abort_requested OR job.attempts + 1 >= %(max_attempts)s THEN 'failed'
                         ELSE 'todo' END::procrastinate_job_status,
           attempts = job.attempts + 1, worker_id = NULL, kgc_worker_id = job.worker_id, abort_requested = false,
           queueing_lock = kgc_lock_if_free(job.id, job.queueing_lock)
     WHERE job.id = %(job_id)s AND job.status = 'doing' AND job.attempts = %(attempts)s
       AND job.worker_id = %(worker_id)s
    RETURNING job.id, job.queue_name, job.task_name, job.status
)
INSERT INTO kgc_jobfailure
       (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry, failed_at)
SELECT id, queue_name, task_name, %(attempts)s + 1, 'TimeoutError', %(message)s, '', status = 'todo', now()
  FROM requeued
RETURNING job_id, will_retry
"""

# Workers silent for longer than the cutoff are declared dead: their rows are removed
# (their process rows with them, and their jobs' worker_id set to NULL by the foreign key).
PRUNE = """
DELETE FROM procrastinate_workers
 WHERE last_heartbeat < now() - make_interval(secs => %(dead_after)s)
RETURNING id
"""

# Jobs left running by a dead worker go back to their queue as a new attempt, or fail
# once out of attempts; each gets a failure record. One statement, rows locked with SKIP
# LOCKED: two rescuers cannot both take the same job, and a worker finishing the job at
# the same moment either wins (the job is no longer ``doing``) or loses (its outcome no
# longer matches the attempt count). Locks are kept as in FINISH.
RESCUE = """
WITH stalled AS (
    SELECT job.id, job.queue_name, job.attempts, job.queueing_lock
      FROM procrastinate_jobs AS job
      LEFT JOIN procrastinate_workers AS owner ON owner.id = job.worker_id
     WHERE job.status = 'doing'
       AND (owner.id IS NULL OR owner.last_heartbeat < now() - make_interval(secs => %(dead_after)s))
       FOR UPDATE OF job SKIP LOCKED
), ranked AS (
    SELECT stalled.*, row_number() OVER (PARTITION BY stalled.queueing_lock ORDER BY stalled.id) AS nth
      FROM stalled
), policy AS (
    SELECT * FROM unnest(%(queues)s::varchar[], %(max_attempts)s::int[]) AS p(queue_name, max_attempts)
), rescued AS (
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN ranked.attempts + 1 < coalesce(policy.max_attempts, 1) AND NOT job.abort_requested
                         THEN 'todo' ELSE 'failed' END::procrastinate_job_status,
           attempts = job.attempts + 1,
           worker_id = NULL,
           kgc_worker_id = job.worker_id,  -- NULL once the dead worker row is gone: not known
           abort_requested = false,
           queueing_lock = CASE WHEN %(keep_locks)s AND ranked.nth = 1 THEN kgc_lock_if_free(job.id, job.queueing_lock)
                                ELSE NULL END
      FROM ranked LEFT JOIN policy ON policy.queue_name = ranked.queue_name
     WHERE job.id = ranked.id
 RETURNING job.id, job.queue_name, job.task_name, job.status, ranked.attempts + 1 AS attempt
)
INSERT INTO kgc_jobfailure
       (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry, failed_at)
SELECT id, queue_name, task_name, attempt, 'WorkerLost',
       'the worker running this job stopped sending heartbeats (killed, lost, or cut off from the database)',
       '', status = 'todo', now()
  FROM rescued
RETURNING job_id, queue_name, will_retry
"""

COMPACT_COUNTS = "SELECT kgc_job_counts_compact()"

# Jobs of this worker whose abort an operator requested.
ABORT_REQUESTED = """
SELECT id FROM procrastinate_jobs
 WHERE status = 'doing' AND abort_requested AND worker_id = %(worker_id)s
"""

# Leader election (River's model): take the lease if it is free or expired, or renew it
# if it is ours. The database's clock decides expiry, so machines' clocks never matter.
ELECT = """
INSERT INTO kgc_leadership AS lease (name, worker_id, elected_at, expires_at)
VALUES (%(name)s, %(worker_id)s, now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
   SET worker_id = excluded.worker_id,
       elected_at = CASE WHEN lease.worker_id = excluded.worker_id THEN lease.elected_at ELSE now() END,
       expires_at = excluded.expires_at
 WHERE lease.worker_id = excluded.worker_id OR lease.expires_at < now()
RETURNING worker_id
"""

RESIGN = """
WITH resigned AS (
    DELETE FROM kgc_leadership WHERE name = %(name)s AND worker_id = %(worker_id)s RETURNING name
)
SELECT pg_notify('kgc_leadership', 'resigned') FROM resigned
"""

LEADERSHIP_CHANNEL = "kgc_leadership"

# The last tick each schedule got, so that a new leader catches up from there.
LAST_DEFERS = """
SELECT task_name, periodic_id, max(defer_timestamp) AS defer_timestamp
  FROM procrastinate_periodic_defers GROUP BY 1, 2
"""

# One periodic job per tick (procrastinate's function: the tick's row in
# procrastinate_periodic_defers is unique), and never a tick older than one already
# deferred: procrastinate forgets older ticks' rows, so without this check a late
# scheduler could defer a forgotten one again.
DEFER_TICK = """
SELECT CASE WHEN NOT EXISTS (
                SELECT 1 FROM procrastinate_periodic_defers
                 WHERE task_name = %(task_name)s AND periodic_id = %(periodic_id)s
                   AND defer_timestamp >= %(defer_timestamp)s)
            THEN procrastinate_defer_periodic_job_v2(%(queue)s, %(lock)s, %(queueing_lock)s, %(task_name)s,
                                                     %(priority)s, %(periodic_id)s, %(defer_timestamp)s, %(args)s)
       END AS id
"""

# The scheduler's check, with the schedules whose latest tick it skipped for good: those
# it skipped now are added, and of those recorded before only the ones in ``keep`` stay
# (schedules still declared that got no tick since).
SCHEDULER_TICKED = """
INSERT INTO kgc_schedulertick AS tick (name, ticked_at, worker_id, missed)
VALUES ('scheduler', now(), %(worker_id)s, %(missed)s)
ON CONFLICT (name) DO UPDATE
   SET ticked_at = excluded.ticked_at,
       worker_id = excluded.worker_id,
       missed = coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each(tick.missed)
                           WHERE key = ANY(%(keep)s::text[])), '{}'::jsonb) || excluded.missed
"""
