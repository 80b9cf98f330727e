"""Benchmark: the nightly compliance refresh of every tenant, through a real worker.

Run on a copy of the seed_demo data (1,000 tenants x 100 clients x 10 documents):

    psql -h 127.0.0.1 -U postgres -c 'create database kgc_bench_copy template kgc_bench'
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/kgc_bench_copy .venv/bin/python -m bench.refresh

It migrates the copy, resets its scores, notifications and jobs, starts ``manage.py runworkers
--queues maintenance,compliance`` as a subprocess, and measures two runs:

1. 10 %: the first tenants (by id), one refresh job each, for yesterday;
2. 100 %: ``enqueue_compliance_refresh()``, the nightly fan-out of every active tenant
   for its own today (the first 10 % now compare with yesterday and may alert).

It prints each run's wall time (enqueue to the last job's success), the per-tenant
rate of both (linear growth keeps them equal), and the worker's peak memory.

The compliance queue's production rate limit (5 jobs a minute, the seed's) would
spread 1,000 tenants over 200 minutes; the worker runs with KGC_RATE_LIMITS=
compliance=off, so what is measured is the refresh itself, one job at a time
(the queue's concurrency of 1 is kept).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kgc.settings")
# Measured as in production: DEBUG off (no query log in the worker).
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-a-secret")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from compliance import services  # noqa: E402
from compliance.models import Client, Document, Filing, Tenant  # noqa: E402
from kgc.job_helpers import enqueue_compliance_refresh  # noqa: E402

SOURCE_DATABASES = {"kgc_bench"}  # shared seed data: never written to
TARGET_SECONDS, TARGET_MB = 60, 300
TIMEOUT = 900.0


def main() -> None:
    name = connection.settings_dict["NAME"]
    if name in SOURCE_DATABASES:
        sys.exit(f"refusing to write to {name}: run on a copy (create database ... template {name})")
    tenants = list(Tenant.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    if len(tenants) < 10:
        sys.exit(f"{name} has {len(tenants)} active tenants; load the demo data first (manage.py seed_demo)")
    print(
        f"database {name}: {len(tenants)} active tenants, {Client.objects.count()} clients, "
        f"{Document.objects.count()} documents, {Filing.objects.count()} filings"
    )
    print(f"load average before: {load()}  (2-core machine, shared)")
    call_command("migrate", verbosity=0)
    reset()
    worker = Worker()
    try:
        worker.wait_ready()
        subset = tenants[: max(len(tenants) // 10, 1)]
        yesterday = timezone.localdate() - timedelta(days=1)

        def enqueue_subset() -> int:
            chosen = list(Tenant.objects.filter(pk__in=subset))
            return len(
                services.compliance_refresh_for_day_fan_out(tenants=chosen, as_of=yesterday, triggered_by="bench")
            )

        def enqueue_all() -> int:
            enqueue_compliance_refresh(triggered_by="bench")  # one fan-out job; it defers one job per tenant
            return len(tenants)

        small = timed_run(enqueue_subset)
        full = timed_run(enqueue_all)
    finally:
        worker.stop()
    report(small, full, worker, tenants=len(tenants))
    print(f"load average after: {load()}")


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def reset() -> None:
    """Each run measures the same work: no earlier scores, notifications or jobs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE compliance_compliancescore, notifications_outboundemail, notifications_notification CASCADE"
        )
        cursor.execute("DELETE FROM procrastinate_jobs")
        cursor.execute("ANALYZE")


class Worker:
    """``manage.py runworkers`` in a subprocess, its resident memory sampled every 100 ms."""

    def __init__(self) -> None:
        env = {
            **os.environ,
            "KGC_RATE_LIMITS": "compliance=off",
            "KGC_SCHEDULER_CATCH_UP_HOURS": "0",  # no catch-up of today's 02:00 tick mid-benchmark
            "PYTHONUNBUFFERED": "1",
        }
        self.log = tempfile.NamedTemporaryFile("w", prefix="refresh-worker-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runworkers", "--queues", "maintenance,compliance"],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.peak_rss_kb = 0
        self.sampling = True
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _status(self, field: str) -> int:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
        return 0

    def _sample(self) -> None:
        while self.sampling:
            self.peak_rss_kb = max(self.peak_rss_kb, self._status("VmRSS"), self._status("VmHWM"))
            time.sleep(0.1)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the worker exited with {self.process.returncode}; see {self.log.name}")
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM procrastinate_workers")
                if cursor.fetchone()[0] >= 2:
                    return
            time.sleep(0.2)
        sys.exit("the worker did not start within 60 s")

    def stop(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, self._status("VmHWM"))
        self.sampling = False
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        print(f"worker log: {self.log.name}")


def timed_run(enqueue: Callable[[], int]) -> dict:
    """Enqueue, wait until the compliance queue is empty, time from enqueue to the last success."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM procrastinate_jobs")
        after_id = cursor.fetchone()[0]
    started = time.time()
    expected = enqueue()
    deadline = time.monotonic() + TIMEOUT
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT count(*) FILTER (WHERE status IN ('todo', 'doing')),
                          count(*) FILTER (WHERE status = 'succeeded' AND queue_name = 'compliance'),
                          count(*) FILTER (WHERE status = 'failed')
                     FROM procrastinate_jobs WHERE id > %s AND queue_name IN ('compliance', 'maintenance')""",
                [after_id],
            )
            pending, done, failed = cursor.fetchone()
        if pending == 0 and done + failed >= expected:
            break
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {TIMEOUT:.0f} s with {pending} jobs pending")
        time.sleep(0.25)
    with connection.cursor() as cursor:
        # Success times from procrastinate's own event log: the n-th tenant finished at finished[n-1].
        cursor.execute(
            """SELECT extract(epoch FROM e.at) FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
                WHERE j.id > %s AND j.queue_name = 'compliance' AND e.type = 'succeeded' ORDER BY e.at""",
            [after_id],
        )
        finished = [float(row[0]) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE kind = 'compliance_alert') FROM notifications_notification"
        )
        _, alerts = cursor.fetchone()
        cursor.execute(
            """SELECT extract(epoch FROM max(e.at) - min(e.at)) FROM procrastinate_events e
                 JOIN procrastinate_jobs j ON j.id = e.job_id
                WHERE j.id > %s AND j.queue_name = 'maintenance' AND e.type IN ('started', 'succeeded')""",
            [after_id],
        )
        fan_out = cursor.fetchone()[0]
        cursor.execute(
            """SELECT extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'succeeded')
                                     - max(e.at) FILTER (WHERE e.type = 'started'))
                 FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
                WHERE j.id > %s AND j.queue_name = 'compliance' GROUP BY j.id ORDER BY j.id""",
            [after_id],
        )
        job_seconds = [float(row[0]) for row in cursor.fetchall() if row[0] is not None]
    return {
        "tenants": done,
        "failed": failed,
        "started": started,
        "finished": finished,
        "alerts": alerts,
        "fan_out": float(fan_out) if fan_out is not None else None,
        "job_seconds": job_seconds,
        "load": load(),
    }


def median_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] * 1000 if ordered else float("nan")


def report(small: dict, full: dict, worker: Worker, *, tenants: int) -> None:
    def seconds(run: dict, n: int | None = None) -> float:
        ends = run["finished"]
        return (ends[(n or len(ends)) - 1] if ends else run["started"]) - run["started"]

    t_small, t_full = seconds(small), seconds(full)
    n_small = small["tenants"]
    print("measured: compliance refresh through one worker process (runworkers --queues maintenance,compliance),")
    print("          compliance concurrency 1, rate limit lifted (KGC_RATE_LIMITS=compliance=off; the production")
    print(f"          limit of 5 jobs/minute would spread {tenants} tenants over {tenants / 5:.0f} minutes)")
    print(
        f"10% run : {n_small} tenants in {t_small:.1f} s = {t_small / max(n_small, 1) * 1000:.1f} ms/tenant "
        f"({small['failed']} failed)"
    )
    print(
        f"100% run: {full['tenants']} tenants in {t_full:.1f} s = {t_full / max(full['tenants'], 1) * 1000:.1f} "
        f"ms/tenant ({full['failed']} failed; enqueue_compliance_refresh() fan-out included; "
        f"{full['alerts']} compliance alerts raised)"
    )
    if full["fan_out"] is not None:
        print(f"          the fan-out job (maintenance queue) ran {full['fan_out']:.1f} s, overlapping the refreshes")
    if len(full["finished"]) >= n_small:
        first = seconds(full, n_small)
        print(
            f"          within the 100% run: first {n_small} tenants done at {first:.1f} s "
            f"({first / n_small * 1000:.1f} ms/tenant)"
        )
    for label, run in (("10% run", small), ("100% run", full)):
        print(
            f"{label}: median job {median_ms(run['job_seconds']):.1f} ms (start to success, the refresh alone); "
            f"load average at its end {run['load']}"
        )
    ratio = (t_full / max(full["tenants"], 1)) / (t_small / max(n_small, 1)) if t_small else float("nan")
    print(f"linearity: per-tenant time at 100% / at 10% = {ratio:.2f} (1.00 = linear)")
    peak_mb = worker.peak_rss_kb / 1024
    print(f"worker peak memory (max RSS): {peak_mb:.0f} MB")
    print(
        f"targets: total < {TARGET_SECONDS} s: {'met' if t_full < TARGET_SECONDS else 'MISSED'}; "
        f"peak memory < {TARGET_MB} MB: {'met' if peak_mb < TARGET_MB else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
