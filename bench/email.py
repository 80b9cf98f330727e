"""Email dispatch benchmark: emails per second through the email workers, against bare send_mail.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/email.py [--emails 2000]

Creates a scratch database ``kgc_ebench`` on DATABASE_URL's server (dropped afterwards)
and starts local SMTP servers (aiosmtpd, in this process): one that answers at once, and one
that takes 200 ms per message, as providers do. Then, in the same run:

1. baseline: ``--emails`` bare ``send_mail`` calls, one after another, in this process;
2. the workers (``runworkers --queues email``, rate limit lifted), with the emails
   (document-expiry template, HTML + text, CSS inlined) queued at once; the clock runs from
   the commit that queues them to the last one the server receives:
   a. one process at ``--concurrency`` (10) against the fast server (with its CPU per email);
   b. ``--processes`` at the CPU count against the fast server;
   c. one process with ``--slow-concurrency`` (80) against the 200 ms server: sending waits on
      the network, so it is the number of sends in flight, each thread on a kept-open
      connection to the server, that sets the pace;
3. the rate limit on: ``--limited-emails`` emails under a scaled window
   (KGC_RATE_LIMITS=email=10/6s, the same 1.67 starts per second as 100 per minute,
   in a tenth of the time), or the real 100/60s with ``--full-minute``; prints the most
   job starts seen in any window (from procrastinate's own "started" events).

Everything runs with DEBUG off (as in production) and logs at WARNING. Figures, not assertions.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is called email.py: its folder must not shadow the standard library's email.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import psycopg  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = "kgc_ebench"


class CountingHandler:
    """Counts messages (and when the last one came) in memory shared with the bench process."""

    def __init__(self, count: Any, last: Any, delay: float = 0.0) -> None:
        self.shared_count = count
        self.shared_last = last
        self.delay = delay

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)  # a provider's latency; other sessions go on meanwhile
        with self.shared_count.get_lock():
            self.shared_count.value += 1
            self.shared_last.value = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
        return "250 OK"


class SmtpServer:
    """A local SMTP server (aiosmtpd) in a process of its own, so that its work competes with
    the workers for the cores, as a real server's would, but not for this process's GIL."""

    def __init__(self, delay: float = 0.0) -> None:
        context = multiprocessing.get_context("fork")
        self.count_value = context.Value("q", 0)
        self.last_value = context.Value("d", 0.0)
        self.port = free_port()  # Controller(port=0) fails its own start-up check
        self.stopped = context.Event()
        self.process = context.Process(target=self._serve, args=(delay,), daemon=True)
        self.process.start()
        wait_until(self._listening, 30, "the SMTP server")

    def _serve(self, delay: float) -> None:
        import logging

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # the server's per-command lines
        controller = Controller(
            CountingHandler(self.count_value, self.last_value, delay), hostname="127.0.0.1", port=self.port
        )
        controller.start()
        self.stopped.wait()
        controller.stop()

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def count(self) -> int:
        return int(self.count_value.value)

    def last(self) -> float:
        return float(self.last_value.value)

    def reset(self) -> None:
        with self.count_value.get_lock():
            self.count_value.value = 0

    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_STARTTLS": "false"}

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid or 0)

    def stop(self) -> None:
        self.stopped.set()
        self.process.join(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin_url(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def recreate(server_url: str, name: str, *, drop_only: bool = False) -> None:
    with psycopg.connect(admin_url(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def wait_until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_workers(env: dict[str, str], processes: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runworkers", "--queues", "email", "--processes", str(processes)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_workers(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(child) for child in children.read_text().split()] if children.exists() else []
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(kid) for kid in kids)


def workers_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM procrastinate_workers")
        return cursor.fetchone()[0]


def workers_ready() -> bool:
    return workers_count() > 0


def queue_emails(tenant, count: int, batch: str) -> list[int]:  # noqa: ANN001
    """``count`` document-expiry emails and their send jobs, in one transaction; the job ids."""
    from django.db import transaction
    from procrastinate.contrib.django import app

    from kgc.queue import jobs
    from notifications.models import OutboundEmail
    from notifications.rendering import SAMPLE_DATA
    from notifications.services import SEND_EMAIL_TASK

    with transaction.atomic():
        emails = OutboundEmail.objects.bulk_create(
            OutboundEmail(
                tenant=tenant,
                to_email=f"user{n}@example.com",
                to_name=f"User {n}",
                subject="TIN Certificate of ACME Corp expires in 30 days",
                template="document-expiry",
                context=SAMPLE_DATA["document-expiry"],
                idempotency_key=f"bench:{batch}:{n}",
            )
            for n in range(count)
        )
        return app.configure_task(SEND_EMAIL_TASK, priority=jobs.priority_to_stored(None)).batch_defer(
            *({"outbound_email_id": email.pk, "tenant_id": tenant.pk} for email in emails)
        )


def bench_baseline(handler: SmtpServer, count: int) -> float:
    from django.core.mail import send_mail

    handler.reset()
    started = time.monotonic()
    for n in range(count):
        send_mail("Baseline", "A plain text body.", "noreply@kgc-compliance.com", [f"user{n}@example.com"])
    return count / (time.monotonic() - started)


def bench_workers(  # noqa: ANN001
    handler: SmtpServer,
    tenant,
    count: int,
    env: dict[str, str],
    *,
    processes: int = 1,
    concurrency: int | None = None,
    batch: str = "unlimited",
) -> tuple[float, int, float]:
    """Emails per second, emails the server received, worker CPU ms per email."""
    from django.db import connection

    from notifications.models import OutboundEmail

    settings = {"KGC_RATE_LIMITS": "email=off"}
    if concurrency:
        settings["KGC_CONCURRENCY"] = f"email={concurrency}"
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_workers")  # the earlier runs' leftovers, if any
    workers = start_workers({**env, **settings}, processes)
    try:
        wait_until(lambda: workers_count() >= processes, 60, "the workers to start")
        time.sleep(1)  # every child registered and idle
        handler.reset()
        cpu_before = cpu_seconds(workers.pid)
        started = time.monotonic()
        queue_emails(tenant, count, batch)
        wait_until(lambda: handler.count() >= count, 600, f"{count} emails")
        elapsed = handler.last() - started
        cpu_ms = (cpu_seconds(workers.pid) - cpu_before) / count * 1000
        time.sleep(1)  # anything sent twice would arrive now
        sent = OutboundEmail.objects.filter(idempotency_key__startswith=f"bench:{batch}:", status="sent").count()
        assert sent == count, f"{sent} of {count} rows recorded as sent"
        return count / elapsed, handler.count(), cpu_ms
    finally:
        stop_workers(workers)


def bench_limited(handler: SmtpServer, tenant, count: int, limit: int, window: float, env: dict[str, str]) -> None:  # noqa: ANN001
    from django.db import connection

    process = start_workers({**env, "KGC_RATE_LIMITS": f"email={limit}/{window:g}s"}, 1)
    try:
        wait_until(workers_ready, 60, "the workers to start")
        handler.reset()
        job_ids = queue_emails(tenant, count, f"limited-{limit}-{window:g}")
        wait_until(lambda: handler.count() >= count, 60 + 3 * window * count / limit, f"{count} limited emails")
    finally:
        stop_workers(process)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT extract(epoch FROM at) FROM procrastinate_events
                WHERE type = 'started' AND job_id = ANY(%s) ORDER BY at""",
            [job_ids],
        )
        starts = [float(row[0]) for row in cursor.fetchall()]
    most = max(sum(1 for other in starts[i:] if other < start + window) for i, start in enumerate(starts))
    span = starts[-1] - starts[0]
    print(f"rate limit {limit} per {window:g} s: {len(starts)} emails started over {span:.1f} s")
    print(f"  most starts in any {window:g} s window: {most} (limit {limit})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=10, help="KGC_CONCURRENCY for the email queue (fast server)")
    parser.add_argument("--slow-concurrency", type=int, default=80, help="sends in flight against the slow server")
    parser.add_argument("--slow-delay", type=float, default=0.2, help="seconds the slow server takes per message")
    parser.add_argument("--limited-emails", type=int, default=40)
    parser.add_argument("--full-minute", action="store_true", help="the real 100 per 60 s limit (takes 1.5 min)")
    args = parser.parse_args()

    server_url = os.environ["DATABASE_URL"]
    scratch_url = admin_url(server_url, SCRATCH)
    handler, slow_handler = SmtpServer(), SmtpServer(delay=args.slow_delay)
    smtp_env, slow_env = handler.env(), slow_handler.env()
    # Production settings (DEBUG off: no query log, no template debug), with a throwaway key.
    os.environ.update(
        {
            "DATABASE_URL": scratch_url,
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-" + os.urandom(16).hex(),
            "LOG_LEVEL": "warning",
            **smtp_env,
        }
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kgc.settings")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    recreate(server_url, SCRATCH)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from compliance.models import Tenant

        call_command("migrate", verbosity=0)
        tenant = Tenant.objects.create(name="Bench Accounting", slug="bench-accounting")
        declared = args.concurrency
        print(f"{args.emails} emails per run, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

        baseline = bench_baseline(handler, args.emails)
        print(f"baseline: {args.emails} bare send_mail calls in one process: {baseline:.0f} emails/s")
        rate, received, cpu_ms = bench_workers(handler, tenant, args.emails, env, concurrency=declared)
        print(
            f"one worker process (concurrency {declared}), fast server: {rate:.0f} emails/s "
            f"({rate / baseline:.2f}x the baseline), {cpu_ms:.2f} ms of worker CPU per email; "
            f"server received {received}"
        )
        rate_n, received_n, cpu_n = bench_workers(
            handler, tenant, args.emails, env, processes=args.processes, concurrency=declared, batch="processes"
        )
        print(
            f"{args.processes} worker processes (concurrency {declared} each), fast server: {rate_n:.0f} emails/s, "
            f"{cpu_n:.2f} ms of worker CPU per email; server received {received_n}   (target: at least 400 emails/s)"
        )
        slow_rate, slow_received, slow_cpu = bench_workers(
            slow_handler,
            tenant,
            args.emails,
            {**env, **slow_env},
            concurrency=args.slow_concurrency,
            batch="slow",
        )
        print(
            f"one worker process (KGC_CONCURRENCY=email={args.slow_concurrency}), server taking "
            f"{args.slow_delay * 1000:.0f} ms per message: {slow_rate:.0f} emails/s, {slow_cpu:.2f} ms of CPU per "
            f"email; server received {slow_received}   (target: at least 200 emails/s)"
        )
        print(f"load average after the runs: {os.getloadavg()[0]:.1f}")
        if args.full_minute:
            bench_limited(handler, tenant, 150, 100, 60.0, env)
        else:
            bench_limited(handler, tenant, args.limited_emails, 10, 6.0, env)
        connection.close()
    finally:
        handler.stop()
        slow_handler.stop()
        recreate(server_url, SCRATCH, drop_only=True)


if __name__ == "__main__":
    main()
