"""Benchmark: both 08:00 reminder runs (document expiry and filing reminders) through real workers.

Run it on a copy of the demo data, never on the shared one:

    psql -h 127.0.0.1 -U postgres -c 'create database kgc_bench_b template kgc_bench'
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/kgc_bench_b .venv/bin/python bench/reminders.py

It migrates and analyzes the copy, clears earlier reminders and jobs, prints the queries one
tenant's run costs for a tenant with 10 documents and one with 1,000, a same-run baseline
(the two services called in process for 20 tenants, rolled back), then defers the two
fan-out jobs (``enqueue_expiry_check()``, ``enqueue_filing_reminder()``) and times a
``runworkers`` subprocess on the maintenance, expiry-notification and filing-reminder queues
until none of their jobs is waiting or running. With ``--again`` a second run over the
same day follows (everything already sent: it must add nothing). The emails created stay queued.

Then the same first morning twice more, with every tenant's default set to ``immediate``
and then to ``daily_digest`` (members' own choices cleared): the emails each queues, and
for the digest readers the items left waiting. Last, the digest run: one
``notifications.send_digests`` job per tenant (for its local tomorrow, whose cut-off is after
every item) through a ``runworkers`` subprocess, timed, with the digests it queued and a check
that no (tenant, person) got two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kgc.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from compliance.demo import DEMO_PASSWORD_HASH, document_types_ensure  # noqa: E402
from compliance.models import Client, Document, Filing, FilingTask, Membership, Tenant  # noqa: E402
from compliance.selectors import tenant_local_date  # noqa: E402
from kgc.job_helpers import enqueue_expiry_check, enqueue_filing_reminder  # noqa: E402
from kgc.queue import jobs  # noqa: E402
from notifications.models import NotificationPreference  # noqa: E402
from notifications.reminders import expiry_reminders_send, filing_reminders_send  # noqa: E402
from notifications.services import DIGEST_TASK  # noqa: E402

QUEUES = ("maintenance", "expiry-notification", "filing-reminder")
# Worker processes for the timed runs: one per CPU, as runworkers starts by default.
PROCESSES = int(os.environ.get("BENCH_PROCESSES", os.cpu_count() or 1))
SMALL_SLUG = "bench-small"
LARGE_SLUG = "demo-0001"


def guard() -> None:
    name = settings.DATABASES["default"]["NAME"]
    if name in ("kgc_bench", "kgc", "kgc_dev"):
        sys.exit(f"refusing to write to {name!r}: run on your own copy (create database ... template kgc_bench)")


def prepare() -> None:
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # The template was never analyzed; a production database always has statistics.
        cursor.execute("ANALYZE")
        cursor.execute(
            "TRUNCATE notifications_outboundemail, notifications_notification, notifications_digest, "
            "notifications_digestrun CASCADE"
        )
        cursor.execute("DELETE FROM procrastinate_jobs WHERE queue_name = ANY(%s)", [[*QUEUES, "email"]])


def small_tenant() -> Tenant:
    """A firm with one client and 10 documents (created once, dates relative to its today)."""
    found = Tenant.objects.filter(slug=SMALL_SLUG).first()
    if found:
        return found
    user_model = get_user_model()
    with transaction.atomic():
        tenant = Tenant.objects.create(name="Bench Small Accounting", slug=SMALL_SLUG, timezone="UTC")
        today = tenant_local_date(tenant, timezone.now())
        for role in ("admin", "manager", "compliance_officer", "tax_preparer"):
            user = user_model.objects.create(
                username=f"{SMALL_SLUG}-{role}", email=f"{role}@{SMALL_SLUG}.example.com", password=DEMO_PASSWORD_HASH
            )
            Membership.objects.create(tenant=tenant, user=user, role=role)
        client = Client.objects.create(tenant=tenant, name="Acme Holdings 1")
        for index, document_type in enumerate(document_types_ensure()[:10]):
            Document.objects.create(
                tenant=tenant,
                client=client,
                document_type=document_type,
                title=f"{document_type.name} (Acme Holdings 1)",
                expires_on=today + timedelta(days=index * 5),
            )
        for index, days in enumerate((2, 6, 12, 40)):
            filing = Filing.objects.create(
                tenant=tenant,
                client=client,
                filing_type="VAT Return",
                period=f"2026-{index + 1:02d}",
                due_date=today + timedelta(days=days),
            )
            FilingTask.objects.create(filing=filing, assignee=user, title="Prepare the return")
    return tenant


def queries_per_tenant(tenant: Tenant) -> tuple[int, int, int, int, int]:
    """(documents, expiry queries, filing queries, notifications) of one tenant's run, rolled back."""
    as_of: date = tenant_local_date(tenant, timezone.now())
    with transaction.atomic():
        with CaptureQueriesContext(connection) as expiry:
            expiry_result = expiry_reminders_send(tenant=tenant, as_of=as_of)
        with CaptureQueriesContext(connection) as filing:
            filing_result = filing_reminders_send(tenant=tenant, as_of=as_of)
        transaction.set_rollback(True)
    return (
        Document.objects.filter(tenant=tenant).count(),
        len(expiry),
        len(filing),
        expiry_result.notifications,
        filing_result.notifications,
    )


def pending() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = ANY(%s) AND status IN ('todo', 'doing')",
            [list(QUEUES)],
        )
        return cursor.fetchone()[0]


def totals() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT (SELECT count(*) FROM notifications_notification WHERE kind = 'document_expiry'),
                      (SELECT count(*) FROM notifications_notification WHERE kind = 'filing_reminder'),
                      (SELECT count(*) FROM notifications_outboundemail WHERE status = 'queued'),
                      (SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'email' AND status = 'todo'),
                      (SELECT count(*) FROM procrastinate_jobs
                        WHERE queue_name = ANY(%s) AND status = 'succeeded'),
                      (SELECT count(*) FROM procrastinate_jobs WHERE queue_name = ANY(%s) AND status = 'failed')""",
            [list(QUEUES), list(QUEUES)],
        )
        row = cursor.fetchone()
    keys = ("expiry notifications", "filing notifications", "emails queued", "email jobs waiting", "jobs ok", "failed")
    return dict(zip(keys, row, strict=True))


def worker_run(log_dir: Path, label: str) -> float:
    """Defer both fan-outs, run the workers until those queues are empty; seconds from defer to empty."""
    return _timed_worker_run(log_dir, label, lambda: (enqueue_expiry_check(), enqueue_filing_reminder()))


def _timed_worker_run(log_dir: Path, label: str, defer: Callable[[], object]) -> float:
    """Start the workers, call ``defer``, wait until the queues are empty; seconds from defer to empty."""
    log = log_dir / f"worker-{label}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "runworkers",
                "--queues",
                ",".join(QUEUES),
                "--processes",
                str(PROCESSES),
            ],  # fmt: skip
            cwd=ROOT,
            # No catch-up of today's 08:00 ticks by the scheduler: the run is the two jobs deferred below.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING", "KGC_SCHEDULER_CATCH_UP_HOURS": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _started():
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the worker did not start; see {log}")
            time.sleep(0.2)
        started = time.monotonic()
        defer()
        while pending():
            if process.poll() is not None:
                sys.exit(f"the worker exited with {process.returncode}; see {log}")
            time.sleep(0.25)
        return time.monotonic() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _started() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - interval '30 seconds'"
        )
        return cursor.fetchone()[0] >= PROCESSES


def in_process_baseline(sample: int = 20) -> tuple[float, float, float]:
    """Mean ms per tenant of each service called directly (no worker, no queue), rolled back; notifications/tenant."""
    tenants = list(Tenant.objects.filter(slug__startswith="demo-").order_by("slug")[1 : sample + 1])
    expiry_s = filing_s = 0.0
    created = 0
    for tenant in tenants:
        as_of = tenant_local_date(tenant, timezone.now())
        with transaction.atomic():
            started = time.perf_counter()
            created += expiry_reminders_send(tenant=tenant, as_of=as_of).notifications
            middle = time.perf_counter()
            created += filing_reminders_send(tenant=tenant, as_of=as_of).notifications
            filing_s += time.perf_counter() - middle
            expiry_s += middle - started
            transaction.set_rollback(True)
    return expiry_s * 1000 / len(tenants), filing_s * 1000 / len(tenants), created / len(tenants)


JOB_TIMES_SQL = """
SELECT jobs.queue_name, count(*),
       avg(extract(epoch FROM done.at - started.at)) * 1000,
       sum(extract(epoch FROM done.at - started.at))
  FROM procrastinate_jobs AS jobs
  JOIN LATERAL (SELECT min(at) AS at FROM procrastinate_events
                 WHERE job_id = jobs.id AND type = 'started') AS started ON true
  JOIN LATERAL (SELECT max(at) AS at FROM procrastinate_events
                 WHERE job_id = jobs.id AND type = 'succeeded') AS done ON true
 WHERE jobs.queue_name IN ('expiry-notification', 'filing-reminder') AND jobs.status = 'succeeded'
 GROUP BY 1 ORDER BY 1
"""


def job_times() -> list[tuple[str, int, float, float]]:
    with connection.cursor() as cursor:
        cursor.execute(JOB_TIMES_SQL)
        return cursor.fetchall()


def main() -> None:
    guard()
    prepare()
    small = small_tenant()
    large = Tenant.objects.get(slug=LARGE_SLUG)
    tenants = Tenant.objects.filter(is_active=True).count()
    documents = Document.objects.count()
    print(f"database {settings.DATABASES['default']['NAME']}: {tenants} active tenants, {documents} documents")
    print("queries for one tenant's run (rolled back):")
    print(f"  {'tenant':<14}{'documents':>10}{'expiry q':>10}{'filing q':>10}{'expiry n':>10}{'filing n':>10}")
    for tenant in (small, large):
        docs, expiry_q, filing_q, expiry_n, filing_n = queries_per_tenant(tenant)
        print(f"  {tenant.slug:<14}{docs:>10}{expiry_q:>10}{filing_q:>10}{expiry_n:>10}{filing_n:>10}")
    expiry_ms, filing_ms, per_tenant = in_process_baseline()
    print(
        f"baseline, services called in process (20 demo tenants, rolled back): expiry {expiry_ms:.0f} ms + "
        f"filing {filing_ms:.0f} ms per tenant, {per_tenant:.0f} notifications per tenant; "
        f"x {tenants} tenants = {(expiry_ms + filing_ms) * tenants / 1000:.0f} s serial"
    )
    with tempfile.TemporaryDirectory() as tmp:
        first = worker_run(Path(tmp), "first")
        after_first = totals()
        created = after_first["expiry notifications"] + after_first["filing notifications"]
        print(
            f"08:00 run through the workers (both fan-outs, {tenants} tenants each, the demo's preferences): "
            f"{first:.1f} s"
        )
        print(
            f"  {created} notifications ({created / first:.0f}/s); "
            + ", ".join(f"{k} {v}" for k, v in after_first.items())
        )
        for queue, count, avg_ms, total_s in job_times():
            print(f"  {queue}: {count} jobs, {avg_ms:.0f} ms per job on average, {total_s:.0f} s of job time in all")
        if "--again" in sys.argv:
            second = worker_run(Path(tmp), "second")
            after_second = totals()
            added = after_second["expiry notifications"] + after_second["filing notifications"] - created
            print(f"second run, same day (everything already sent): {second:.1f} s, {added} notifications added")


def morning_with_default(log_dir: Path, default: str) -> dict[str, int]:
    """The first 08:00 run again, every tenant on ``default`` and no member's own choice."""
    Tenant.objects.update(notification_email_default=default)
    NotificationPreference.objects.all().delete()
    prepare()
    seconds = worker_run(log_dir, f"morning-{default}")
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT (SELECT count(*) FROM notifications_notification),
                      (SELECT count(*) FROM notifications_outboundemail),
                      (SELECT count(*) FROM notifications_notification WHERE email_status = 'digest_pending'),
                      (SELECT count(*) FROM (SELECT DISTINCT tenant_id, recipient_id FROM notifications_notification
                                              WHERE email_status = 'digest_pending') AS people)"""
        )
        notifications, emails, waiting, people = cursor.fetchone()
    print(
        f"first morning, every tenant on {default}: {seconds:.1f} s"
        + ("   (target: 20 s)" if default == "immediate" else "")
        + f", {notifications} notifications, "
        f"{emails} emails queued, {waiting} items waiting for a digest ({people} people)"
    )
    return {"emails": emails, "waiting": waiting, "people": people}


def digest_run(log_dir: Path, people: int) -> None:
    """One digest job per tenant for its local tomorrow, through the workers; timed and checked."""
    now = timezone.now()
    kwargs = {
        tenant.pk: {"as_of": (tenant_local_date(tenant, now) + timedelta(days=1)).isoformat()}
        for tenant in Tenant.objects.filter(is_active=True).only("pk", "timezone")
    }
    seconds = _timed_worker_run(
        log_dir, "digests", lambda: jobs.jobs_fan_out(task_name=DIGEST_TASK, kwargs_by_tenant=kwargs)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT (SELECT count(*) FROM notifications_digest),
                      (SELECT count(*) FROM notifications_outboundemail WHERE template = 'daily-digest'),
                      (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM notifications_digest
                                                         GROUP BY tenant_id, recipient_id) AS per_person),
                      (SELECT count(*) FROM notifications_notification WHERE email_status = 'digested'),
                      (SELECT count(*) FROM notifications_notification WHERE email_status = 'digest_pending')"""
        )
        digests, emails, most, digested, still_waiting = cursor.fetchone()
    print(
        f"digest run, {len(kwargs)} tenants through the workers: {seconds:.1f} s (target: 10 s); "
        f"{digests} digests ({emails} emails) for {people} people with something to report, at most {most} "
        f"per (tenant, person); {digested} items digested, {still_waiting} still waiting"
    )


def digests_main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        immediate = morning_with_default(Path(tmp), "immediate")
        digest = morning_with_default(Path(tmp), "daily_digest")
        print(
            f"  emails queued the first morning: {immediate['emails']} (immediate) vs {digest['emails']} "
            f"(daily digest: the urgent ones) + one digest per person ({digest['people']})"
        )
        digest_run(Path(tmp), digest["people"])


if __name__ == "__main__":
    if "--digests-only" not in sys.argv:
        main()
    digests_main()
