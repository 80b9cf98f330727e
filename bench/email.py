"""Email dispatch benchmark: the outbox's dispatcher against bare send_mail, fairness, urgency and the limit.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/email.py [--emails 3000]

Creates a scratch database ``kgc_ebench`` on DATABASE_URL's server (dropped afterwards) and
starts local SMTP servers (aiosmtpd), each in a process of its own: one that answers at once,
one that takes 20 ms and one that takes 200 ms per message. Then, in the same run:

1. **baseline**: ``--emails`` bare ``send_mail`` calls, one after another, in this process
   (a plain-text message; each call opens and closes its SMTP session, as send_mail does);
2. **throughput**: the workers (``runworkers --queues email``, rate limit lifted) send
   ``--emails`` document-expiry emails (HTML and text, CSS inlined, each with its own data)
   queued at once; the clock runs from the commit that queues them to the last message the
   server receives. With runworkers' defaults (one process per CPU, the queue's
   concurrency), then one process alone;
3. **a slow server** (200 ms a message): one worker process, ``KGC_CONCURRENCY=email=N``
   (``--slow-concurrency``); also the most database connections it held at once;
4. **fairness**: one firm queues 2,000 emails, then 40 small firms queue 3 each, against the
   20 ms server; when each small firm's first email arrives, as a share of the whole drain;
5. **urgency**: 2,000 normal emails queued, then one urgent one: how long until the server has it;
6. **the rate limit** across three worker processes: 100 per 60 s with ``--full-minute`` (takes
   about 3 minutes), else the same rate scaled to 10 per 6 s; the most emails claimed in any
   window, from the rows' claim times (the database's clock);
7. **a long line** (``--waiting``, 100,000 by default): that many queued emails, half of them
   one firm's and the rest spread over 999 firms; the cost of one claim of 20
   (``notifications_emails_claim``, rolled back so the line stays as long), of queuing one more
   email (its place in line and its row), and, as baselines on the same rows, a fair claim
   that ranks each firm's rows with a window function and a plain first-in-first-out claim
   (neither fair nor urgent-first).

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
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import psycopg  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = "kgc_ebench"
_TENANT = re.compile(rb"^X-KGC-Tenant: (\d+)\r?$", re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-ID: <outbound-(\d+)\.", re.MULTILINE)


class ArrivalHandler:
    """Counts messages and, when asked, notes each one's tenant, email id and arrival time."""

    def __init__(self, count: Any, last: Any, delay: float, arrivals: list[tuple[int, int, float]]) -> None:
        self.count = count
        self.last = last
        self.delay = delay
        self.arrivals = arrivals

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)  # a provider's latency; other sessions go on meanwhile
        now = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
        with self.count.get_lock():
            self.count.value += 1
            self.last.value = now
        content = envelope.original_content
        tenant, email = _TENANT.search(content), _MESSAGE_ID.search(content)
        self.arrivals.append((int(tenant.group(1)) if tenant else 0, int(email.group(1)) if email else 0, now))
        return "250 OK"


class SmtpServer:
    """A local SMTP server (aiosmtpd) in a process of its own, so that its work competes with
    the workers for the cores, as a real server's would, but not for this process's GIL."""

    def __init__(self, delay: float = 0.0) -> None:
        context = multiprocessing.get_context("fork")
        self.count_value = context.Value("q", 0)
        self.last_value = context.Value("d", 0.0)
        self.port = free_port()  # Controller(port=0) fails its own start-up check
        self.control, child = context.Pipe()
        self.process = context.Process(target=self._serve, args=(delay, child), daemon=True)
        self.process.start()
        wait_until(self._listening, 30, "the SMTP server")

    def _serve(self, delay: float, control: Any) -> None:
        import logging

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # the server's per-command lines
        arrivals: list[tuple[int, int, float]] = []
        handler = ArrivalHandler(self.count_value, self.last_value, delay, arrivals)
        controller = Controller(handler, hostname="127.0.0.1", port=self.port)
        controller.start()
        while True:
            command = control.recv()
            if command == "arrivals":
                control.send(list(arrivals))
            elif command == "reset":
                arrivals.clear()
                control.send(None)
            else:
                break
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
        self.control.send("reset")
        self.control.recv()

    def arrivals(self) -> list[tuple[int, int, float]]:
        self.control.send("arrivals")
        return self.control.recv()

    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_STARTTLS": "false"}

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid or 0)

    def stop(self) -> None:
        self.control.send("stop")
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
        time.sleep(0.005)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(child) for child in children.read_text().split()] if children.exists() else []
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(kid) for kid in kids)


class Workers:
    """``runworkers --queues email`` in a subprocess, stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], *, processes: int | None = None) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_workers")  # the earlier runs' leftovers, if any
        self.expected = processes or os.cpu_count() or 1
        args = ["runworkers", "--queues", "email"] + (["--processes", str(processes)] if processes else [])
        environment = {**env}
        environment.pop("KGC_PROCESSES", None)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=environment,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: registered() >= self.expected, 60, "the workers to start")
        time.sleep(1)  # every child registered and idle

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def registered() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM kgc_workerprocess")
        return cursor.fetchone()[0]


def tenants_make(count: int, prefix: str) -> list[Any]:
    from compliance.models import Tenant

    return [Tenant.objects.create(name=f"{prefix} {n}", slug=f"{prefix.lower()}-{n}") for n in range(count)]


def queue_emails(tenant: Any, count: int, batch: str, *, priority: int = 2) -> list[int]:
    """``count`` document-expiry emails of one tenant (each with data of its own), in the
    outbox's line, in one transaction; their ids."""
    from django.db import transaction

    from notifications.models import OutboundEmail
    from notifications.outbox import email_places_take
    from notifications.rendering import SAMPLE_DATA

    sample = SAMPLE_DATA["document-expiry"]
    with transaction.atomic():
        first = email_places_take(tenant_id=tenant.pk, priority=priority, count=count)
        emails = OutboundEmail.objects.bulk_create(
            OutboundEmail(
                tenant=tenant,
                to_email=f"user{n}@example.com",
                to_name=f"User {n}",
                subject=f"TIN Certificate {n} of ACME Corp expires in 30 days",
                template="document-expiry",
                context={**sample, "documentTitle": f"TIN Certificate {n}", "clientName": f"Client {n % 97}"},
                idempotency_key=f"bench:{batch}:{tenant.pk}:{n}",
                priority=priority,
                fair_key=first + n,
            )
            for n in range(count)
        )
    return [email.pk for email in emails]


def bench_baseline(server: SmtpServer, count: int) -> float:
    from django.core.mail import send_mail

    server.reset()
    started = time.monotonic()
    for n in range(count):
        send_mail("Baseline", "A plain text body.", "noreply@kgc-compliance.com", [f"user{n}@example.com"])
    return count / (time.monotonic() - started)


class ConnectionWatch:
    """The most connections to the scratch database held at once (this process's excluded)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                [(count,)] = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND application_name LIKE 'kgc-worker%%'"
                ).fetchall()
                self.most = max(self.most, int(count))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.most


def bench_throughput(
    server: SmtpServer,
    tenant: Any,
    count: int,
    env: dict[str, str],
    *,
    processes: int | None,
    concurrency: int | None,
    batch: str,
    watch_url: str | None = None,
) -> dict[str, float]:
    """Emails per second from the commit to the last arrival, the workers' CPU per email, the
    most database connections they held (with ``watch_url``)."""
    from notifications.models import OutboundEmail

    settings = {"KGC_RATE_LIMITS": "email=off"}
    if concurrency:
        settings["KGC_CONCURRENCY"] = f"email={concurrency}"
    workers = Workers({**env, **settings}, processes=processes)
    watch = ConnectionWatch(watch_url) if watch_url else None
    try:
        server.reset()
        cpu_before, server_before = cpu_seconds(workers.process.pid), server.cpu_seconds()
        started = time.monotonic()
        queue_emails(tenant, count, batch)
        wait_until(lambda: server.count() >= count, 900, f"{count} emails")
        elapsed = server.last() - started
        figures = {
            "rate": count / elapsed,
            "worker_cpu_ms": (cpu_seconds(workers.process.pid) - cpu_before) / count * 1000,
            "server_cpu_ms": (server.cpu_seconds() - server_before) / count * 1000,
        }
        time.sleep(1)  # anything sent twice would arrive now
        figures["received"] = server.count()
        sent = OutboundEmail.objects.filter(idempotency_key__startswith=f"bench:{batch}:", status="sent").count()
        assert sent == count == server.count(), f"{sent} recorded sent, {server.count()} received, of {count}"
        if watch:
            figures["connections"] = watch.stop()
        return figures
    finally:
        if watch:
            watch.stop()
        workers.stop()


def bench_fairness(server: SmtpServer, env: dict[str, str], *, big: int, small: int, each: int) -> dict[str, float]:
    """One firm's ``big`` emails, then ``small`` firms' ``each``, each firm a caller of its own:
    how long each small firm waited for its first email, from its own commit, as a share of
    the whole drain (with FIFO it would be most of it)."""
    [whale] = tenants_make(1, "Whale")
    minnows = tenants_make(small, "Minnow")
    workers = Workers({**env, "KGC_RATE_LIMITS": "email=off"})
    committed: dict[int, float] = {}
    try:
        server.reset()
        started = time.monotonic()
        queue_emails(whale, big, "fair-whale")
        for tenant in minnows:
            queue_emails(tenant, each, "fair-minnow")
            committed[tenant.pk] = time.monotonic()
        total = big + small * each
        wait_until(lambda: server.count() >= total, 600, f"{total} emails")
        arrivals = server.arrivals()
    finally:
        workers.stop()
    drain = max(at for _, _, at in arrivals) - started
    waits = sorted(min(at for tenant, _, at in arrivals if tenant == pk) - commit for pk, commit in committed.items())
    return {
        "drain": drain,
        "p50": statistics.median(waits) / drain,
        "p95": waits[int(0.95 * (len(waits) - 1))] / drain,
        "worst": waits[-1] / drain,
        "p95_ms": waits[int(0.95 * (len(waits) - 1))] * 1000,
        "whale_done": max(at for tenant, _, at in arrivals if tenant == whale.pk) - started,
    }


def bench_urgency(server: SmtpServer, env: dict[str, str], *, behind: int) -> tuple[float, int]:
    """Seconds from the commit of an urgent email, queued behind ``behind`` normal ones, to its
    arrival; and how many of the normal ones had arrived by then."""
    [tenant] = tenants_make(1, "Hurry")
    workers = Workers({**env, "KGC_RATE_LIMITS": "email=off"})
    try:
        server.reset()
        queue_emails(tenant, behind, "urgency-normal")
        wait_until(lambda: server.count() >= 20, 60, "the first normal emails")  # the line is moving
        [urgent] = queue_emails(tenant, 1, "urgency-urgent", priority=0)
        committed = time.monotonic()
        wait_until(lambda: any(email == urgent for _, email, _ in server.arrivals()), 60, "the urgent email")
        arrivals = server.arrivals()
        wait_until(lambda: server.count() >= behind + 1, 600, "the rest")
    finally:
        workers.stop()
    arrived = next(at for _, email, at in arrivals if email == urgent)
    before = sum(1 for _, email, at in arrivals if at < arrived and email != urgent)
    return arrived - committed, before


def bench_limited(server: SmtpServer, env: dict[str, str], *, count: int, limit: int, window: float) -> None:
    from django.db import connection

    [tenant] = tenants_make(1, f"Limited {limit}")
    # three separate runworkers (each one process): the limit is shared through PostgreSQL
    processes: list[Workers | _Extra] = [Workers({**env, "KGC_RATE_LIMITS": f"email={limit}/{window:g}s"}, processes=1)]
    processes += [_worker_more(env, limit, window) for _ in range(2)]
    try:
        server.reset()
        ids = queue_emails(tenant, count, f"limited-{limit}-{window:g}")
        wait_until(lambda: server.count() >= count, 60 + 3 * window * count / limit, f"{count} limited emails")
    finally:
        for workers in processes:
            workers.stop()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM claimed_at), claimed_by FROM notifications_outboundemail "
            "WHERE id = ANY(%s) ORDER BY claimed_at",
            [ids],
        )
        rows = cursor.fetchall()
    claims = [float(at) for at, _ in rows]
    most = max(sum(1 for other in claims[i:] if other < start + window) for i, start in enumerate(claims))
    senders = len({worker for _, worker in rows})
    print(
        f"rate limit {limit} per {window:g} s, 3 worker processes ({senders} of them sent): {len(claims)} emails "
        f"over {claims[-1] - claims[0]:.1f} s; most in any {window:g} s window: {most} (limit {limit})"
    )


CLAIM_RANKED = """
WITH ranked AS (
    SELECT id, row_number() OVER (PARTITION BY tenant_id ORDER BY id) AS turn
      FROM notifications_outboundemail WHERE status = 'queued'
), picked AS (
    SELECT email.id FROM notifications_outboundemail AS email JOIN ranked USING (id)
     ORDER BY email.priority, ranked.turn, email.id LIMIT 20
       FOR UPDATE OF email SKIP LOCKED
)
UPDATE notifications_outboundemail AS email SET status = 'sending', attempts = email.attempts + 1
  FROM picked WHERE email.id = picked.id RETURNING email.id
"""
CLAIM_FIFO = """
WITH picked AS (
    SELECT id FROM notifications_outboundemail WHERE status = 'queued' ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED
)
UPDATE notifications_outboundemail AS email SET status = 'sending', attempts = email.attempts + 1
  FROM picked WHERE email.id = picked.id RETURNING email.id
"""


def bench_long_line(waiting: int, *, rounds: int = 200) -> dict[str, tuple[float, float]]:
    """Milliseconds (median, p95) of each statement against ``waiting`` queued emails, each
    in a transaction rolled back, so every round sees the same line."""
    from django.db import connection, transaction

    from notifications.outbox import CLAIM_SQL, claim_params

    firms = tenants_make(1000, "Line")
    whale, rest = waiting // 2, (waiting - waiting // 2) // 999
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_outboundemail CASCADE")
        cursor.execute("DELETE FROM notifications_emailfairclock")
        # Each firm's rows numbered 1, 2, 3... from the head of the line: the places
        # notifications_email_places gives when every firm queues into an empty line.
        cursor.execute(
            """
            INSERT INTO notifications_outboundemail
                   (tenant_id, to_email, to_name, subject, template, context, status, attempts, last_error,
                    delivery_unknown, message_id, idempotency_key, created_at, priority, fair_key)
            SELECT firm.id, 'user' || n || '@example.com', '', 'Line ' || n, 'document-expiry', '{}', 'queued', 0,
                   '', false, '', 'line:' || firm.id || ':' || n, now(), 2, n
              FROM unnest(%s::bigint[], %s::integer[]) AS firm (id, emails), generate_series(1, firm.emails) AS n
            """,
            [[firm.pk for firm in firms], [whale] + [rest] * 999],
        )
        cursor.execute(
            "INSERT INTO notifications_emailfairclock (tenant_id, priority, last_key) "
            "SELECT tenant_id, 2, max(fair_key) FROM notifications_outboundemail GROUP BY tenant_id"
        )
        cursor.execute("VACUUM ANALYZE notifications_outboundemail")
        cursor.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        [worker_id] = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM notifications_outboundemail WHERE status = 'queued'")
        [queued] = cursor.fetchone()
    params = {**claim_params(worker_id=worker_id, want=20), "limit": None, "window": None}

    def timed(statement: str, arguments: Any, *, expect: int | None = 20) -> tuple[float, float]:
        took = []
        for _ in range(rounds):
            with transaction.atomic(), connection.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute(statement, arguments)
                rows = cursor.fetchall()
                took.append((time.perf_counter() - started) * 1000)
                if expect is not None and len(rows) != expect:
                    raise RuntimeError(f"claimed {len(rows)} rows, expected {expect}")
                transaction.set_rollback(True)
        took.sort()
        return statistics.median(took), took[int(len(took) * 0.95) - 1]

    one_more = """
        WITH place AS (SELECT notifications_email_places(%s, 2::smallint, 1) AS key)
        INSERT INTO notifications_outboundemail
               (tenant_id, to_email, to_name, subject, template, context, status, attempts, last_error,
                delivery_unknown, message_id, idempotency_key, created_at, priority, fair_key)
        SELECT %s, 'new@example.com', '', 'New', 'document-expiry', '{}', 'queued', 0, '', false, '',
               'line:new', now(), 2, place.key FROM place RETURNING id
    """
    figures = {
        "claim": timed(CLAIM_SQL, params),
        "queue one": timed(one_more, [firms[7].pk, firms[7].pk], expect=1),
        "ranked": timed(CLAIM_RANKED, None),
        "fifo": timed(CLAIM_FIFO, None),
    }
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_workers WHERE id = %s", [worker_id])
    print(f"a line of {queued:,} queued emails ({whale:,} of one firm, {rest} each of 999 others), {rounds} rounds:")
    for name, label in (
        ("claim", "the outbox's claim of 20 (fair, urgent first)"),
        ("queue one", "queuing one more email (its place in line and its row)"),
        ("ranked", "baseline: a fair claim of 20 ranking each firm's rows (row_number() over the line)"),
        ("fifo", "baseline: a first-in-first-out claim of 20 (neither fair nor urgent first)"),
    ):
        median, p95 = figures[name]
        print(f"  {label}: median {median:.2f} ms, p95 {p95:.2f} ms")
    return figures


class _Extra:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _worker_more(env: dict[str, str], limit: int, window: float) -> _Extra:
    before = registered()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runworkers", "--queues", "email", "--processes", "1"],
        env={**env, "KGC_RATE_LIMITS": f"email={limit}/{window:g}s"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: registered() > before, 60, "another worker")
    return _Extra(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=3000)
    parser.add_argument("--slow-concurrency", type=int, default=200, help="sends in flight against the slow server")
    parser.add_argument("--slow-delay", type=float, default=0.2, help="seconds the slow server takes per message")
    parser.add_argument("--full-minute", action="store_true", help="the real 100 per 60 s limit (takes ~3 min)")
    parser.add_argument("--waiting", type=int, default=100_000, help="queued emails in the long line")
    parser.add_argument("--skip", default="", help="parts to leave out: throughput,slow,fair,urgent,limit,line")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    server_url = os.environ["DATABASE_URL"]
    scratch_url = admin_url(server_url, SCRATCH)
    fast, medium, slow = SmtpServer(), SmtpServer(delay=0.02), SmtpServer(delay=args.slow_delay)
    # Production settings (DEBUG off: no query log, no template debug), with a throwaway key.
    os.environ.update(
        {
            "DATABASE_URL": scratch_url,
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-" + os.urandom(16).hex(),
            "LOG_LEVEL": "warning",
            **fast.env(),
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

        call_command("migrate", verbosity=0)
        [tenant] = tenants_make(1, "Bench")
        print(f"{args.emails} emails per run, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

        baseline = bench_baseline(fast, args.emails)
        print(f"baseline: {args.emails} bare send_mail calls in one process: {baseline:.0f} emails/s")
        if "throughput" not in skip:
            for processes, label in ((None, "runworkers defaults"), (1, "one worker process")):
                figures = bench_throughput(fast, tenant, args.emails, env, processes=processes, concurrency=None,
                                           batch=f"fast-{processes}")  # fmt: skip
                print(
                    f"{label}, server answering at once: {figures['rate']:.0f} emails/s "
                    f"({figures['rate'] / baseline:.2f}x the baseline); CPU per email: workers "
                    f"{figures['worker_cpu_ms']:.2f} ms, SMTP server {figures['server_cpu_ms']:.2f} ms   "
                    "(target: at least 3x and 1,000/s)"
                )
        if "slow" not in skip:
            figures = bench_throughput(
                slow, tenant, args.emails, {**env, **slow.env()}, processes=1, concurrency=args.slow_concurrency,
                batch="slow", watch_url=scratch_url,
            )  # fmt: skip
            print(
                f"one worker process, KGC_CONCURRENCY=email={args.slow_concurrency}, server taking "
                f"{args.slow_delay * 1000:.0f} ms a message: {figures['rate']:.0f} emails/s, at most "
                f"{figures['connections']:.0f} database connections   (target: at least 500/s, at most 10 connections)"
            )
        if "fair" not in skip:
            fair = bench_fairness(medium, {**env, **medium.env()}, big=2000, small=40, each=3)
            print(
                f"fairness, 2,000 emails of one firm then 40 firms x 3, server taking 20 ms a message: drained in "
                f"{fair['drain']:.1f} s (the big firm's last at {fair['whale_done']:.1f} s); each small firm's first "
                f"email {fair['p50'] * 100:.1f}% of the drain after its commit (median), {fair['p95'] * 100:.1f}% "
                f"({fair['p95_ms']:.0f} ms, p95), {fair['worst'] * 100:.1f}% (worst)   (target: p95 within 5%)"
            )
        if "urgent" not in skip:
            wait, before = bench_urgency(medium, {**env, **medium.env()}, behind=2000)
            print(
                f"urgency: an urgent email queued behind 2,000 normal ones reached the server {wait * 1000:.0f} ms "
                f"after its commit, {before} normal ones arrived before it (most already in flight)   "
                "(target: within 1 s)"
            )
        print(f"load average after the runs: {os.getloadavg()[0]:.1f}")
        if "limit" not in skip:
            if args.full_minute:
                bench_limited(fast, env, count=250, limit=100, window=60.0)
            else:
                bench_limited(fast, env, count=40, limit=10, window=6.0)
        if "line" not in skip:
            bench_long_line(args.waiting)
        connection.close()
    finally:
        for server in (fast, medium, slow):
            server.stop()
        recreate(server_url, SCRATCH, drop_only=True)


if __name__ == "__main__":
    main()
