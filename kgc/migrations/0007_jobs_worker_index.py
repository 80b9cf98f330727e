from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("kgc", "0006_job_results"),
    ]

    operations = [
        # Removing a worker (declared dead, or stopping) sets worker_id to NULL on its jobs
        # (procrastinate's foreign key): without an index that matches ``worker_id = $1``,
        # that is a scan of the whole jobs table. Finished jobs keep no worker (kgc/queue/sql.py),
        # so the index holds only the jobs being run.
        migrations.RunSQL(
            "CREATE INDEX kgc_jobs_worker_idx ON procrastinate_jobs (worker_id) WHERE worker_id IS NOT NULL;",
            "DROP INDEX IF EXISTS kgc_jobs_worker_idx;",
        ),
    ]
