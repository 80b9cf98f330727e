"""Job outcome counters that retention never lowers: the ``*_total`` series of ``/metrics``.

The jobs table's statement-level update trigger (migration 0002), which already keeps the
counts per (queue, status), also counts each attempt that ends, from the same transition
tables: a job leaving ``doing`` as ``succeeded``, as ``failed`` or ``aborted`` (failed for
good), or back to ``todo`` with its attempt counted (retried; a job put back unstarted, its
attempt not counted, is not a retry). Whatever statement ends it counts: the worker's batch
finish, the shutdown's requeue, the rescue of a dead worker's jobs, an unknown task's
failure. A statement that ends no attempt (a claim, a cancellation) skips the count after
one look at its old rows.

Run times are the worker's: the batch finish (``kgc/queue/sql.py`` FINISH) counts each job
that succeeded or failed for good in its run-time bucket (``timed`` rows, by upper bound,
``kgc_job_duration_bounds()``), with the time the worker measured around the task. Reading
each job's start back from the events table in the trigger would cost an index lookup per
job (about 4 % of the worker's throughput on no-op jobs).

One row per statement and (queue, outcome, bucket): no shared row that every worker would
update. Compaction folds them, keeping the sums; cleanup and retention delete jobs, never
these rows. The counts start at zero with this migration.
"""

import importlib

from django.db import migrations, models

# Upper bounds (seconds) of the run-time buckets, +Infinity implied, for FINISH. kgc.queue.jobs
# DURATION_BOUNDS says the same (tests/kgc/queue/test_outcome_counts.py holds them together).
OUTCOMES = """
CREATE FUNCTION kgc_job_duration_bounds() RETURNS float8[] LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.1, 0.5, 1, 5, 15, 60, 300, 1800}'::float8[]
$$;

CREATE OR REPLACE FUNCTION kgc_job_counts_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
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

    IF EXISTS (SELECT FROM old_jobs WHERE status = 'doing') THEN
        INSERT INTO kgc_joboutcomecount (queue_name, outcome, jobs, seconds)
            SELECT job.queue_name,
                   CASE WHEN job.status = 'succeeded' THEN 'succeeded'
                        WHEN job.status = 'todo' THEN 'retried'
                        ELSE 'failed' END,
                   count(*), 0
              FROM new_jobs AS job
              JOIN old_jobs AS was ON was.id = job.id
             WHERE was.status = 'doing'
               AND (job.status IN ('succeeded', 'failed', 'aborted')
                    OR (job.status = 'todo' AND job.attempts > was.attempts))
             GROUP BY 1, 2;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION kgc_job_counts_compact() RETURNS void LANGUAGE sql AS $$
    WITH folded AS (
        DELETE FROM kgc_jobcountdelta RETURNING queue_name, status, delta
    )
    INSERT INTO kgc_jobcountdelta (queue_name, status, delta)
        SELECT queue_name, status, sum(delta) FROM folded GROUP BY 1, 2 HAVING sum(delta) <> 0;
    WITH folded AS (
        DELETE FROM kgc_joboutcomecount RETURNING queue_name, outcome, le, jobs, seconds
    )
    INSERT INTO kgc_joboutcomecount (queue_name, outcome, le, jobs, seconds)
        SELECT queue_name, outcome, le, sum(jobs), sum(seconds) FROM folded GROUP BY 1, 2, 3;
$$;
"""

_QUEUE_LAYER_SQL = importlib.import_module("kgc.migrations.0002_queue_layer_sql")


def _function_of(text: str, name: str) -> str:
    """A function's definition out of migration 0002's statements, as CREATE OR REPLACE."""
    start = text.index(f"CREATE FUNCTION {name}(")
    end = text.index("$$;", text.index("AS $$", start) + len("AS $$")) + len("$$;")
    return text[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


# The way back: migration 0002's functions, as they were.
OUTCOMES_DROP = "\n\n".join(
    [
        _function_of(_QUEUE_LAYER_SQL.JOB_COUNTS, "kgc_job_counts_on_update"),
        _function_of(_QUEUE_LAYER_SQL.JOB_COUNTS, "kgc_job_counts_compact"),
        "DROP FUNCTION IF EXISTS kgc_job_duration_bounds();",
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("kgc", "0008_scheduler_missed_ticks"),
    ]

    operations = [
        migrations.CreateModel(
            name="JobOutcomeCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("queue_name", models.CharField(max_length=128)),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                            ("retried", "Retried"),
                            ("timed", "Timed"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "le",
                    models.FloatField(
                        help_text="Timed rows: the upper bound (seconds) of their run-time bucket "
                        "(kgc_job_duration_bounds(), +Infinity past the last).",
                        null=True,
                    ),
                ),
                ("jobs", models.BigIntegerField()),
                ("seconds", models.FloatField(default=0.0, help_text="Timed rows: their run times, summed.")),
            ],
        ),
        # CREATE OR REPLACE keeps the trigger (and takes no lock on the jobs table that a
        # DROP TRIGGER would): the next statement on the table uses the new body.
        migrations.RunSQL(OUTCOMES, OUTCOMES_DROP),
    ]
