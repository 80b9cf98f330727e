from django.db import migrations


class Migration(migrations.Migration):
    # Built CONCURRENTLY, which cannot run in a transaction: the jobs table keeps taking
    # defers, claims and finishes while the index builds (tests/test_migrations.py).
    atomic = False

    dependencies = [
        ("kgc", "0006_job_results"),
    ]

    operations = [
        # Removing a worker (declared dead, or stopping) sets worker_id to NULL on its jobs
        # (procrastinate's foreign key): without an index that matches ``worker_id = $1``,
        # that is a scan of the whole jobs table. Finished jobs keep no worker (kgc/queue/sql.py),
        # so the index holds only the jobs being run. A build that failed half-way leaves an
        # invalid index behind: it is dropped first.
        migrations.RunSQL("DROP INDEX CONCURRENTLY IF EXISTS kgc_jobs_worker_idx;", migrations.RunSQL.noop),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY kgc_jobs_worker_idx ON procrastinate_jobs (worker_id)"
            " WHERE worker_id IS NOT NULL;",
            "DROP INDEX CONCURRENTLY IF EXISTS kgc_jobs_worker_idx;",
        ),
    ]
