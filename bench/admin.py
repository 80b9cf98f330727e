"""Admin page timings on a big database: a million jobs next to the 1,000 x 100 x 10 demo data.

    DEBUG=1 DATABASE_URL=postgresql://postgres@127.0.0.1:5432/kgc_bench_e .venv/bin/python bench/admin.py

Run it on a copy of the demo database (``create database kgc_bench_e template kgc_bench``,
then ``manage.py migrate``): the first run inserts the synthetic jobs (about a minute),
later runs reuse them. Each page is fetched with Django's test client, logged in as a
superuser: one warm-up, then ``--runs`` timed fetches; the median and the maximum are
printed with the number of SQL queries. Target: every page under 300 ms. A page that
answers 404 (a screen not written yet) is skipped. ``--any-database`` runs it on a database
whose name does not say "bench" (a developer's own, which then holds the million jobs).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

# The script's own folder must not shadow the standard library (bench/queue.py vs queue).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kgc.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

JOBS = 1_000_000
TARGET_MS = 300

# One statement: the statement-level count triggers see the whole batch once, so the
# queue counts stay right. Status by id: 85% succeeded, 5% failed, 2% cancelled,
# 1% running, 7% waiting (a fifth of those scheduled later: delayed).
INSERT_JOBS = """
INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, scheduled_at, attempts, priority)
SELECT queue, CASE queue WHEN 'compliance' THEN 'compliance.refresh_tenant'
                         WHEN 'expiry-notification' THEN 'notifications.check_expiry'
                         WHEN 'filing-reminder' THEN 'notifications.send_filing_reminders'
                         ELSE 'notifications.send_email' END,
       jsonb_build_object('tenant_id', 1 + i %% 1000),
       status::procrastinate_job_status,
       CASE WHEN status = 'todo' AND i %% 5 = 0 THEN now() + interval '1 hour' END,
       CASE WHEN status IN ('succeeded', 'failed') THEN 1 + (status = 'failed')::int ELSE 0 END, -100
  FROM (
        SELECT i,
               (ARRAY['compliance', 'expiry-notification', 'filing-reminder', 'email', 'email'])[1 + i %% 5] AS queue,
               CASE WHEN i %% 100 < 85 THEN 'succeeded' WHEN i %% 100 < 90 THEN 'failed'
                    WHEN i %% 100 < 92 THEN 'cancelled' WHEN i %% 100 < 93 THEN 'doing' ELSE 'todo' END AS status
          FROM generate_series(1, %(count)s) AS i
  ) AS rows
"""

# Events as workers write them: in time order, job ids growing with time (a job finished
# 30 days ago has a low id), every finished job with its 'started' event a few seconds
# before its finishing one, and a 'deferred' event for each waiting job. That puts the
# last day's events (about 3%, read by the chart and /metrics) at the end of the table,
# as in production.
INSERT_EVENTS = """
WITH span AS (SELECT min(id) AS low, max(id) AS high FROM procrastinate_jobs),
finished AS (
    SELECT job.id, job.status,
           now() - interval '30 days' * (span.high - job.id) / greatest(span.high - span.low, 1)
               - random() * interval '1 minute' AS finished_at
      FROM procrastinate_jobs AS job, span
     WHERE job.status IN ('succeeded', 'failed', 'cancelled')
)
INSERT INTO procrastinate_events (job_id, type, at)
SELECT job_id, type, at FROM (
    SELECT id AS job_id, 'started'::procrastinate_job_event_type AS type,
           finished_at - random() * interval '20 seconds' AS at
      FROM finished WHERE status <> 'cancelled'
    UNION ALL
    SELECT id, status::text::procrastinate_job_event_type, finished_at FROM finished
    UNION ALL
    SELECT id, 'deferred', now() - random() * interval '10 minutes' FROM procrastinate_jobs WHERE status = 'todo'
) AS events
ORDER BY at
"""

INSERT_FAILURES = """
INSERT INTO kgc_jobfailure (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry,
                            failed_at)
SELECT job.id, job.queue_name, job.task_name, attempt, 'smtplib.SMTPServerDisconnected',
       'Connection unexpectedly closed',
       repeat('  File "notifications/delivery.py", line 42, in email_send' || chr(10), 20),
       attempt = 1, now() - random() * interval '30 days'
  FROM procrastinate_jobs AS job CROSS JOIN generate_series(1, 2) AS attempt
 WHERE job.status = 'failed'
"""


# Indexes the console would like (kgc/migrations); --proposed-indexes creates them on the
# benchmark copy to measure their effect.
PROPOSED_INDEXES = [
    # The tenant filter: equality on args->'tenant_id', newest first.
    "CREATE INDEX IF NOT EXISTS kgc_jobs_tenant_idx ON procrastinate_jobs ((args -> 'tenant_id'), id)",
    # The task filter and task search: equality on task_name, newest first.
    "CREATE INDEX IF NOT EXISTS kgc_jobs_task_idx ON procrastinate_jobs (task_name, id)",
    # Each queue's first waiting job (dashboard, /metrics), without visiting other queues' rows.
    "CREATE INDEX IF NOT EXISTS kgc_jobs_waiting_idx ON procrastinate_jobs (queue_name, id) INCLUDE (scheduled_at)"
    " WHERE status = 'todo'",
    # The chart: completed and failed per 5 minutes, index-only.
    "CREATE INDEX IF NOT EXISTS kgc_events_outcome_idx ON procrastinate_events (type, at)"
    " WHERE type IN ('succeeded', 'failed')",
]

# Three worker processes, one holding the lease, each running a few of the 'doing' jobs: what
# the dashboard's workers section reads.
INSERT_WORKERS = """
WITH workers AS (
    INSERT INTO procrastinate_workers (last_heartbeat) SELECT now() FROM generate_series(1, 3) RETURNING id
), processes AS (
    INSERT INTO kgc_workerprocess (worker_id, host, pid, queues, concurrency, started_at, duties, reported_at)
    SELECT id, 'bench-' || id, 1000 + id, ARRAY['compliance', 'email'], '{"compliance": 1, "email": 5}',
           now() - interval '1 hour', '{"listener": {"state": "running", "restarts": 0}}', now()
      FROM workers
    RETURNING worker_id
), lease AS (
    INSERT INTO kgc_leadership (name, worker_id, elected_at, expires_at)
    SELECT 'leader', min(worker_id), now(), now() + interval '1 day' FROM processes
    ON CONFLICT (name) DO UPDATE SET worker_id = EXCLUDED.worker_id, expires_at = EXCLUDED.expires_at
)
UPDATE procrastinate_jobs SET worker_id = (SELECT min(worker_id) FROM processes)
 WHERE id IN (SELECT id FROM procrastinate_jobs WHERE status = 'doing' ORDER BY id DESC LIMIT 6)
"""

SEEDED = {
    "jobs": "SELECT count(*) >= %(count)s FROM procrastinate_jobs",
    "events": "SELECT EXISTS (SELECT 1 FROM procrastinate_events WHERE type = 'started')",
    "failures": "SELECT EXISTS (SELECT 1 FROM kgc_jobfailure)",
    "workers": "SELECT EXISTS (SELECT 1 FROM kgc_workerprocess)",
}


def seed() -> None:
    """Insert whatever is missing (jobs, then their events, then failure records)."""
    changed = False
    with connection.cursor() as cursor:
        steps = (("jobs", INSERT_JOBS), ("events", INSERT_EVENTS), ("failures", INSERT_FAILURES))
        for label, sql in (*steps, ("workers", INSERT_WORKERS)):
            cursor.execute(SEEDED[label], {"count": JOBS})
            if cursor.fetchone()[0]:
                continue
            if label == "events":  # the triggers' own events of the bulk insert are replaced
                cursor.execute("TRUNCATE procrastinate_events")
            started = time.perf_counter()
            cursor.execute(sql, {"count": JOBS})
            print(f"seeded {cursor.rowcount:>9,} {label} in {time.perf_counter() - started:.1f} s", flush=True)
            changed = True
        if changed:
            cursor.execute("SELECT kgc_job_counts_compact()")
            # A steady-state database is vacuumed: index-only scans need the visibility map.
            cursor.execute("VACUUM ANALYZE procrastinate_jobs, procrastinate_events, kgc_jobfailure")


def sample_ids() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM procrastinate_jobs WHERE status = 'failed'")
        failed = cursor.fetchone()[0]
        cursor.execute("SELECT max(id) FROM procrastinate_jobs WHERE status = 'succeeded'")
        succeeded = cursor.fetchone()[0]
    return {"failed": failed, "succeeded": succeeded}


def pages(ids: dict[str, int]) -> list[tuple[str, str]]:
    jobs = "/admin/procrastinate/procrastinatejob/"
    hour_ago = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() - 3600))
    week_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400))
    return [
        ("dashboard", "/admin/kgc/queuepause/"),
        ("dashboard: chart per queue", "/admin/kgc/queuepause/?chart=queues"),
        ("dashboard poll (JSON)", "/admin/kgc/queuepause/data/"),
        ("jobs: unfiltered", jobs),
        ("jobs: page 50", f"{jobs}?p=50"),
        ("jobs: failed", f"{jobs}?status=failed"),
        ("jobs: completed", f"{jobs}?status=completed"),
        ("jobs: waiting", f"{jobs}?status=waiting"),
        ("jobs: delayed", f"{jobs}?status=delayed"),
        ("jobs: email queue, waiting", f"{jobs}?queue_name=email&status=waiting"),
        ("jobs: finished, last hour", f"{jobs}?finished_from={hour_ago}"),
        ("jobs: finished, last 7 days", f"{jobs}?finished_from={week_ago}"),
        ("jobs: failed, last 7 days", f"{jobs}?status=failed&finished_from={week_ago}"),
        ("jobs: by ids", f"{jobs}?id__in={ids['failed']},{ids['succeeded']}"),
        ("jobs: by task", f"{jobs}?task_name=notifications.send_filing_reminders"),
        ("jobs: tenant 123", f"{jobs}?tenant=123"),
        ("jobs: tenant 123, failed", f"{jobs}?tenant=123&status=failed"),
        ("jobs: search by id", f"{jobs}?q={ids['failed']}"),
        ("jobs: search by task text", f"{jobs}?q=reminder"),
        ("job detail: failed", f"{jobs}{ids['failed']}/change/"),
        ("job detail: succeeded", f"{jobs}{ids['succeeded']}/change/"),
        ("admin index", "/admin/"),
        ("/metrics", "/metrics"),
        ("/readyz", "/readyz"),
        ("tenants", "/admin/compliance/tenant/"),
        ("memberships", "/admin/compliance/membership/"),
        ("clients", "/admin/compliance/client/"),
        ("documents", "/admin/compliance/document/"),
        ("filings", "/admin/compliance/filing/"),
        ("compliance scores", "/admin/compliance/compliancescore/"),
        ("notifications", "/admin/notifications/notification/"),
        ("outbound emails", "/admin/notifications/outboundemail/"),
        ("outbound emails: failed", "/admin/notifications/outboundemail/?status=failed"),
    ]


def time_page(client: Client, url: str, runs: int) -> tuple[int, list[float], int]:
    response = client.get(url, REMOTE_ADDR="127.0.0.1")  # warm-up (and the status)
    if response.status_code == 404:
        return 404, [], 0
    timings = []
    queries = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            client.get(url, REMOTE_ADDR="127.0.0.1")
            timings.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
    return response.status_code, timings, queries


def baseline_count_ms() -> float:
    """What an unbounded COUNT(*) of the jobs table costs (the stock changelist's)."""
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("SELECT count(*) FROM procrastinate_jobs")
        cursor.fetchone()
        return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--proposed-indexes", action="store_true", help="create PROPOSED_INDEXES first (on this copy only)"
    )
    parser.add_argument("--any-database", action="store_true", help="run on a database not named *bench*")
    options = parser.parse_args()
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 404s and /readyz's 503 are expected
    name = connection.settings_dict["NAME"]
    if "bench" not in name and not options.any_database:
        print(
            f"bench/admin.py inserts a million jobs: run it on a benchmark copy (a database named *bench*), not {name}"
        )
        return 2
    seed()
    if options.proposed_indexes:
        with connection.cursor() as cursor:
            for sql in PROPOSED_INDEXES:
                cursor.execute(sql)
            cursor.execute("ANALYZE procrastinate_jobs, procrastinate_events")
        print("with the proposed indexes:", ", ".join(sql.split()[5] for sql in PROPOSED_INDEXES))
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'procrastinate_jobs'")
        print(f"procrastinate_jobs: about {cursor.fetchone()[0]:,} rows; {options.runs} runs per page after a warm-up")
    print(f"{'page':<30} {'median ms':>10} {'max ms':>8} {'queries':>8}")
    slow = []
    for label, url in pages(sample_ids()):
        status, timings, queries = time_page(client, url, options.runs)
        if status == 404:
            print(f"{label:<30} {'skipped (404: not registered)':>28}")
            continue
        flag = "" if status == 200 else f"  (HTTP {status})"
        if max(timings) > TARGET_MS:
            slow.append(label)
            flag += "  SLOW"
        print(f"{label:<30} {statistics.median(timings):>10.1f} {max(timings):>8.1f} {queries:>8}{flag}")
    print(f"baseline: one exact COUNT(*) of procrastinate_jobs takes {baseline_count_ms():.1f} ms")
    print(f"pages over {TARGET_MS} ms: {', '.join(slow) if slow else 'none'}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
