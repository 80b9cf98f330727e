"""The queue layer's SQL: the fetch that honours pause and rate limits, job counters and indexes.

``kgc_fetch_job`` is procrastinate's ``procrastinate_fetch_job_v2`` (same candidate
rules, same ``SKIP LOCKED`` claim), looked up queue by queue over an index, with two
more rules applied in the same statement so that no worker anywhere can slip past them:

* a paused queue (a row in ``kgc_queuepause``) yields no job;
* a rate-limited queue yields a job only while fewer than ``limit`` jobs started in the
  last ``window`` seconds (counted in per-second slots). The check and the claim run under
  a per-queue advisory lock, taken in queue-name order (no deadlock), and the start is
  counted in the same transaction, so concurrent workers cannot both take the last slot.
"""

from django.db import migrations

FETCH_JOB = """
CREATE FUNCTION kgc_fetch_job(
    target_queue_names character varying[],
    p_worker_id bigint,
    limited_queues character varying[],
    limits integer[],
    window_seconds double precision[]
)
    RETURNS procrastinate_jobs
    LANGUAGE plpgsql
AS $$
DECLARE
    blocked character varying[];
    queue character varying;
    i integer;
    oldest_slot timestamp with time zone;
    found_jobs procrastinate_jobs;
BEGIN
    SELECT coalesce(array_agg(queue_name), '{}') INTO blocked FROM kgc_queuepause;

    FOR i IN 1 .. coalesce(array_length(limited_queues, 1), 0) LOOP
        queue := limited_queues[i];
        CONTINUE WHEN queue = ANY(blocked);
        CONTINUE WHEN NOT (queue = ANY(target_queue_names));
        PERFORM pg_advisory_xact_lock(hashtext('kgc_rate_limit'), hashtext(queue));
        -- A start now is allowed while the slots from (now - window) to now hold fewer
        -- than the limit. Whole-second slots reach back to the start of the oldest second
        -- any window ending now can touch, so the count is never low: no window of that
        -- length ever holds more than the limit (at worst a second's worth is held back).
        oldest_slot := date_trunc('second', clock_timestamp()) - make_interval(secs => ceil(window_seconds[i]));
        DELETE FROM kgc_ratelimitslot WHERE queue_name = queue AND slot < oldest_slot;
        IF (SELECT coalesce(sum(starts), 0) FROM kgc_ratelimitslot WHERE queue_name = queue) >= limits[i] THEN
            blocked := blocked || queue;
        END IF;
    END LOOP;

    -- One index lookup per queue (kgc_jobs_fetch_idx), not a walk down procrastinate's
    -- priority index past every other queue's backlog: with 400,000 emails waiting, a
    -- filing-reminder fetch stays a fraction of a millisecond. The ORDER BY on -priority
    -- matches only that index, so even a generic plan cannot pick the priority index.
    WITH candidate AS (
        SELECT head.*
          FROM unnest(target_queue_names) AS queue_list(name)
         CROSS JOIN LATERAL (
            SELECT jobs.*
              FROM procrastinate_jobs AS jobs
             WHERE jobs.status = 'todo'
               AND jobs.queue_name = queue_list.name
               AND NOT (jobs.queue_name = ANY(blocked))
               AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
               -- reject the job if its lock has earlier or higher priority jobs
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
             LIMIT 1
               FOR UPDATE OF jobs SKIP LOCKED
         ) AS head
         ORDER BY head.priority DESC, head.id ASC
         LIMIT 1
    )
    UPDATE procrastinate_jobs
        SET status = 'doing', worker_id = p_worker_id
        FROM candidate
        WHERE procrastinate_jobs.id = candidate.id
        RETURNING procrastinate_jobs.* INTO found_jobs;

    IF found_jobs.id IS NOT NULL AND found_jobs.queue_name = ANY(limited_queues) THEN
        INSERT INTO kgc_ratelimitslot AS slots (queue_name, slot, starts)
        VALUES (found_jobs.queue_name, date_trunc('second', clock_timestamp()), 1)
        ON CONFLICT (queue_name, slot) DO UPDATE SET starts = slots.starts + 1;
    END IF;

    RETURN found_jobs;
END;
$$;
"""

# Statement-level triggers with transition tables: one small INSERT per statement, not
# per row, and no lock on a shared counter row (which would serialise every worker).
JOB_COUNTS = """
CREATE FUNCTION kgc_job_counts_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kgc_jobcountdelta (queue_name, status, delta)
        SELECT queue_name, status::text, count(*) FROM new_jobs GROUP BY 1, 2;
    RETURN NULL;
END;
$$;

CREATE FUNCTION kgc_job_counts_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kgc_jobcountdelta (queue_name, status, delta)
        SELECT queue_name, status::text, -count(*) FROM old_jobs GROUP BY 1, 2;
    RETURN NULL;
END;
$$;

CREATE FUNCTION kgc_job_counts_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kgc_jobcountdelta (queue_name, status, delta)
        SELECT queue_name, status, sum(delta)
          FROM (
                SELECT queue_name, status::text AS status, 1 AS delta FROM new_jobs
                UNION ALL
                SELECT queue_name, status::text, -1 FROM old_jobs
          ) AS changes
         GROUP BY 1, 2
        HAVING sum(delta) <> 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER kgc_job_counts_insert AFTER INSERT ON procrastinate_jobs
    REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION kgc_job_counts_on_insert();
CREATE TRIGGER kgc_job_counts_delete AFTER DELETE ON procrastinate_jobs
    REFERENCING OLD TABLE AS old_jobs FOR EACH STATEMENT EXECUTE FUNCTION kgc_job_counts_on_delete();
CREATE TRIGGER kgc_job_counts_update AFTER UPDATE ON procrastinate_jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION kgc_job_counts_on_update();

-- Fold the deltas into one row per (queue, status). Rows inserted meanwhile are left
-- for the next run; two concurrent runs cannot count a row twice (DELETE claims it).
CREATE FUNCTION kgc_job_counts_compact() RETURNS void LANGUAGE sql AS $$
    WITH folded AS (
        DELETE FROM kgc_jobcountdelta RETURNING queue_name, status, delta
    )
    INSERT INTO kgc_jobcountdelta (queue_name, status, delta)
        SELECT queue_name, status, sum(delta) FROM folded GROUP BY 1, 2 HAVING sum(delta) <> 0;
$$;

-- Jobs that existed before the triggers.
INSERT INTO kgc_jobcountdelta (queue_name, status, delta)
    SELECT queue_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2;
"""

JOB_COUNTS_DROP = """
DROP TRIGGER IF EXISTS kgc_job_counts_insert ON procrastinate_jobs;
DROP TRIGGER IF EXISTS kgc_job_counts_delete ON procrastinate_jobs;
DROP TRIGGER IF EXISTS kgc_job_counts_update ON procrastinate_jobs;
DROP FUNCTION IF EXISTS kgc_job_counts_on_insert();
DROP FUNCTION IF EXISTS kgc_job_counts_on_delete();
DROP FUNCTION IF EXISTS kgc_job_counts_on_update();
DROP FUNCTION IF EXISTS kgc_job_counts_compact();
DELETE FROM kgc_jobcountdelta;
"""

# Built CONCURRENTLY, one statement each (outside a transaction), so that a jobs table
# already in use keeps taking writes; a failed build's invalid leftover is dropped first.
INDEXES = {
    # The fetch: one queue's waiting jobs in priority order (see kgc_fetch_job).
    "kgc_jobs_fetch_idx": "ON procrastinate_jobs (queue_name, (-priority), id) WHERE status = 'todo'",
    # Delayed jobs (not yet due) per queue, for the stats query.
    "kgc_jobs_delayed_idx": "ON procrastinate_jobs (scheduled_at, queue_name) WHERE status = 'todo'",
    # Finished jobs by the time they finished, for cleanup by age.
    "kgc_events_finished_idx": "ON procrastinate_events (at, job_id)"
    " WHERE type IN ('succeeded', 'failed', 'cancelled', 'aborted')",
    # Failed jobs per queue, for get_failed and retry_failed.
    "kgc_jobs_failed_idx": "ON procrastinate_jobs (queue_name, id) WHERE status = 'failed'",
}

# Added NOT VALID (a brief lock), then validated in a transaction of its own (writes go on).
FAILURE_JOB_FK = """
ALTER TABLE kgc_jobfailure ADD CONSTRAINT kgc_jobfailure_job_fk
    FOREIGN KEY (job_id) REFERENCES procrastinate_jobs (id) ON DELETE CASCADE NOT VALID;
"""
FAILURE_JOB_FK_VALIDATE = "ALTER TABLE kgc_jobfailure VALIDATE CONSTRAINT kgc_jobfailure_job_fk;"
FAILURE_JOB_FK_DROP = "ALTER TABLE kgc_jobfailure DROP CONSTRAINT IF EXISTS kgc_jobfailure_job_fk;"


def _index_operations() -> list[migrations.RunSQL]:
    operations = []
    for name, definition in INDEXES.items():
        operations.append(migrations.RunSQL(f"DROP INDEX CONCURRENTLY IF EXISTS {name};", migrations.RunSQL.noop))
        operations.append(
            migrations.RunSQL(
                f"CREATE INDEX CONCURRENTLY {name} {definition};", f"DROP INDEX CONCURRENTLY IF EXISTS {name};"
            )
        )
    return operations


class Migration(migrations.Migration):
    # The indexes on the jobs and events tables are built CONCURRENTLY, outside a transaction
    # (tests/test_migrations.py); each RunSQL below is still one transaction of its own.
    atomic = False

    dependencies = [
        ("kgc", "0001_initial"),
        ("procrastinate", "0041_post_retry_failed_job"),
    ]

    operations = [
        migrations.RunSQL(
            FETCH_JOB,
            "DROP FUNCTION IF EXISTS kgc_fetch_job(varchar[], bigint, varchar[], integer[], double precision[]);",
        ),
        migrations.RunSQL(JOB_COUNTS, JOB_COUNTS_DROP),
        *_index_operations(),
        migrations.RunSQL(FAILURE_JOB_FK, FAILURE_JOB_FK_DROP),
        migrations.RunSQL(FAILURE_JOB_FK_VALIDATE, migrations.RunSQL.noop),
    ]
