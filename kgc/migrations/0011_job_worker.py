from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("kgc", "0010_fetch_jobs_lock_check"),
    ]

    operations = [
        # The worker that ran a job's latest attempt, kept after it finishes (procrastinate's
        # worker_id is cleared then: its foreign key makes removing a worker touch every job
        # that keeps it). Written by the statements that end an attempt (kgc/queue/sql.py), in
        # the row they update anyway; no index, no foreign key. A nullable column without a
        # default is added without rewriting the table; the lock it needs is brief, and not
        # waited for behind a long transaction (lock_timeout: the migration fails and can be
        # run again rather than stall every claim and finish queued behind it).
        migrations.RunSQL(
            "SET LOCAL lock_timeout = '10s';"
            " ALTER TABLE procrastinate_jobs ADD COLUMN IF NOT EXISTS kgc_worker_id bigint;",
            "ALTER TABLE procrastinate_jobs DROP COLUMN IF EXISTS kgc_worker_id;",
        ),
    ]
