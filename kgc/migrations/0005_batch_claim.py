"""The batch claim of the worker's own loop (``kgc/queue/``).

``kgc_fetch_jobs`` claims up to N due jobs per queue in one statement, with the rules
``kgc_fetch_job`` applied to one job (it replaces it):

* a paused queue (a row in ``kgc_queuepause``) yields no job;
* a rate-limited queue yields at most what its window still allows: the per-second
  slots are summed under the queue's advisory lock and the batch is cut to
  ``limit - started``, and the batch's starts are counted in the same transaction;
* procrastinate's ``lock``: a job whose lock is held by a running job, or by an earlier
  or higher-priority waiting job, is skipped, and a batch takes at most one job per lock;
* fencing: a worker whose registration was removed (declared dead) claims nothing; the
  call fails with SQLSTATE ``KGC01`` and the worker registers again.

``kgc_lock_if_free`` decides whether a job going back to its queue may keep its
queueing lock: only if no other waiting job holds it (the lock allows one waiting job).
"""

import importlib

from django.db import migrations

FETCH_JOBS = """
CREATE FUNCTION kgc_fetch_jobs(
    queue_names character varying[],
    wants integer[],
    p_worker_id bigint,
    limited_queues character varying[],
    limits integer[],
    window_seconds double precision[]
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
AS $$
DECLARE
    paused character varying[];
    queue character varying;
    want integer;
    i integer;
    j integer;
    started integer;
    claimed integer;
BEGIN
    -- KEY SHARE: the registration cannot be removed until this claim commits, while the
    -- worker's own heartbeat (which updates the row) is not held up.
    PERFORM 1 FROM procrastinate_workers WHERE id = p_worker_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not registered (declared dead)', p_worker_id USING ERRCODE = 'KGC01';
    END IF;
    SELECT coalesce(array_agg(queue_name), '{}') INTO paused FROM kgc_queuepause;

    -- The caller passes its queues sorted by name, so every worker takes the advisory locks
    -- of rate-limited queues in the same order (no deadlock).
    FOR i IN 1 .. coalesce(array_length(queue_names, 1), 0) LOOP
        queue := queue_names[i];
        want := wants[i];
        CONTINUE WHEN want <= 0 OR queue = ANY(paused);
        j := array_position(limited_queues, queue);
        IF j IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('kgc_rate_limit'), hashtext(queue));
            -- Whole-second slots reach back to the start of the oldest second any window ending
            -- now can touch, so the count is never low: no window ever holds more than the limit.
            DELETE FROM kgc_ratelimitslot
             WHERE queue_name = queue
               AND slot < date_trunc('second', clock_timestamp()) - make_interval(secs => ceil(window_seconds[j]));
            SELECT coalesce(sum(starts), 0) INTO started FROM kgc_ratelimitslot WHERE queue_name = queue;
            want := least(want, limits[j] - started);
            CONTINUE WHEN want <= 0;
        END IF;

        RETURN QUERY
        WITH candidate AS (
            -- One index range (kgc_jobs_fetch_idx) in priority order; the ORDER BY on
            -- -priority matches only that index, so even a generic plan cannot pick another.
            SELECT jobs.id, jobs.lock, jobs.priority
              FROM procrastinate_jobs AS jobs
             WHERE jobs.status = 'todo'
               AND jobs.queue_name = queue
               AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
               AND NOT EXISTS (
                    SELECT 1
                      FROM procrastinate_jobs AS other_jobs
                     WHERE jobs.lock IS NOT NULL
                       AND other_jobs.lock = jobs.lock
                       AND (
                            other_jobs.status = 'doing'
                            OR (
                                other_jobs.status = 'todo'
                                AND (
                                    other_jobs.priority > jobs.priority
                                    OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)
                                )
                            )
                       )
               )
             ORDER BY jobs.queue_name, -jobs.priority, jobs.id
             LIMIT want
               FOR UPDATE OF jobs SKIP LOCKED
        ), picked AS (
            SELECT ranked.id
              FROM (
                    SELECT candidate.id, candidate.lock,
                           row_number() OVER (PARTITION BY candidate.lock
                                              ORDER BY candidate.priority DESC, candidate.id) AS nth
                      FROM candidate
              ) AS ranked
             WHERE ranked.lock IS NULL OR ranked.nth = 1
        )
        UPDATE procrastinate_jobs AS jobs
           SET status = 'doing', worker_id = p_worker_id
          FROM picked
         WHERE jobs.id = picked.id
        RETURNING jobs.*;

        GET DIAGNOSTICS claimed = ROW_COUNT;
        IF j IS NOT NULL AND claimed > 0 THEN
            INSERT INTO kgc_ratelimitslot AS slots (queue_name, slot, starts)
            VALUES (queue, date_trunc('second', clock_timestamp()), claimed)
            ON CONFLICT (queue_name, slot) DO UPDATE SET starts = slots.starts + excluded.starts;
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION kgc_lock_if_free(p_job_id bigint, p_queueing_lock text)
    RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT CASE
        WHEN p_queueing_lock IS NULL THEN NULL
        WHEN EXISTS (
            SELECT 1 FROM procrastinate_jobs
             WHERE queueing_lock = p_queueing_lock AND status = 'todo' AND id <> p_job_id
        ) THEN NULL
        ELSE p_queueing_lock
    END
$$;
"""

FETCH_JOBS_DROP = """
DROP FUNCTION IF EXISTS kgc_lock_if_free(bigint, text);
DROP FUNCTION IF EXISTS kgc_fetch_jobs(varchar[], integer[], bigint, varchar[], integer[], double precision[]);
"""

OLD_FETCH_DROP = "DROP FUNCTION IF EXISTS kgc_fetch_job(varchar[], bigint, varchar[], integer[], double precision[]);"


def _old_fetch() -> str:
    return importlib.import_module("kgc.migrations.0002_queue_layer_sql").FETCH_JOB


class Migration(migrations.Migration):
    dependencies = [
        ("kgc", "0004_worker_processes"),
    ]

    operations = [
        migrations.RunSQL(FETCH_JOBS, FETCH_JOBS_DROP),
        migrations.RunSQL(OLD_FETCH_DROP, _old_fetch()),
    ]
