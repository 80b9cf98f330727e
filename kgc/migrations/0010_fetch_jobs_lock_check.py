"""The batch claim checks procrastinate's ``lock`` only for jobs that have one.

``kgc_fetch_jobs`` (``0005_batch_claim``) skipped a job whose lock another running or
earlier waiting job holds with ``NOT EXISTS (... WHERE jobs.lock IS NOT NULL AND ...)``.
The planner turns that into an anti join whose inner side is every waiting and running
job, filtered row by row; with the statistics of a quiet queue (almost no waiting jobs,
which is how ANALYZE usually finds it) it picks a nested loop, so a burst of N waiting
jobs costs N × N rows per claim: 315 ms a claim with 2,000 jobs waiting, the whole of
the 08:00 runs' time. Written as ``jobs.lock IS NULL OR NOT EXISTS (...)`` the check is
a subplan that runs only for a job that has a lock, whatever the statistics.
"""

import importlib

from django.db import migrations

_BATCH_CLAIM = importlib.import_module("kgc.migrations.0005_batch_claim")

_OLD_CHECK = """
               AND NOT EXISTS (
                    SELECT 1
                      FROM procrastinate_jobs AS other_jobs
                     WHERE jobs.lock IS NOT NULL
                       AND other_jobs.lock = jobs.lock
"""
_NEW_CHECK = """
               AND (jobs.lock IS NULL OR NOT EXISTS (
                    SELECT 1
                      FROM procrastinate_jobs AS other_jobs
                     WHERE other_jobs.lock = jobs.lock
"""
_OLD_CLOSE = """
                       )
               )
             ORDER BY jobs.queue_name, -jobs.priority, jobs.id
"""
_NEW_CLOSE = """
                       )
               ))
             ORDER BY jobs.queue_name, -jobs.priority, jobs.id
"""


def _fetch_jobs_of(text: str) -> str:
    """``kgc_fetch_jobs``'s definition alone out of 0005's statements, as CREATE OR REPLACE."""
    start = text.index("CREATE FUNCTION kgc_fetch_jobs(")
    end = text.index("$$;", text.index("AS $$", start) + len("AS $$")) + len("$$;")
    return text[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


OLD_FETCH_JOBS = _fetch_jobs_of(_BATCH_CLAIM.FETCH_JOBS)
if OLD_FETCH_JOBS.count(_OLD_CHECK) != 1 or OLD_FETCH_JOBS.count(_OLD_CLOSE) != 1:
    raise RuntimeError("0005_batch_claim's kgc_fetch_jobs is not the text this migration rewrites")
NEW_FETCH_JOBS = OLD_FETCH_JOBS.replace(_OLD_CHECK, _NEW_CHECK).replace(_OLD_CLOSE, _NEW_CLOSE)


class Migration(migrations.Migration):
    dependencies = [
        ("kgc", "0009_job_outcome_counts"),
    ]

    operations = [
        migrations.RunSQL(NEW_FETCH_JOBS, OLD_FETCH_JOBS),
    ]
