"""The first run: how long an email enqueued over the API waits during `make run`'s first minutes.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/first_run.py [--minutes 5]

Starts ``bin/dev`` (what ``make run`` runs) on a scratch database ``kgc_first_run`` of
DATABASE_URL's server (dropped afterwards), with the demo's defaults (20 firms), the
seed's limit of 100 emails a minute, and a local SMTP server (aiosmtpd, in a process of its
own) in place of the console backend, so that each message's arrival can be timed. With
DATABASE_URL set, ``make run`` skips the embedded PostgreSQL; everything after its start-up
is the same.

From the moment the workers have registered, every ``--every`` seconds for ``--minutes``
minutes, one email is enqueued over the API (``POST /api/v1/jobs/email``, the TypeScript
client's call; normal priority, the client's default, or ``--priority``) for a demo firm with
nothing of its own waiting, and timed from the request to its arrival at the SMTP server.
Beside each, the baseline from the same moment: how long a first-in-first-out line would have
kept it waiting, the emails ahead of it (waiting, claimed or waiting to retry) at the limit's
rate; and how many of those are urgent, which the outbox sends first whatever the firm.

Figures, not assertions; the target is 60 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The folder holds email.py: it must not shadow the standard library's email.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import psycopg  # noqa: E402

from bench.email import SmtpServer, admin_url, free_port, recreate, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = "kgc_first_run"
LIMIT_PER_MINUTE = 100  # the seed's default (KGC_RATE_LIMITS), which make run keeps
PROBE_DATA = {
    "documentId": 1,
    "clientId": 1,
    "documentTitle": "TIN Certificate",
    "documentType": "TIN Certificate",
    "clientName": "First Run Probe",
    "expiresOn": "2027-01-04",
    "daysLeft": 30,
    "tenantName": "Example Accounting",
}

# A demo firm with no email of its own waiting (queued, claimed, or waiting to retry).
IDLE_FIRM = """
    SELECT t.id FROM compliance_tenant t
    WHERE t.is_active AND NOT EXISTS (
        SELECT 1 FROM notifications_outboundemail e
        WHERE e.tenant_id = t.id AND e.status IN ('queued', 'sending', 'retrying'))
    ORDER BY t.id LIMIT 1
"""
# What a first-in-first-out line would put ahead of a new email: every email waiting now.
WAITING = """
    SELECT count(*) FILTER (WHERE status IN ('queued', 'sending', 'retrying')),
           count(*) FILTER (WHERE status IN ('queued', 'sending', 'retrying') AND priority = 0)
    FROM notifications_outboundemail
"""


class DevRun:
    """``bin/dev`` in a process group of its own, its output in a log file; stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            ["bin/dev"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def api_email(port: int, token: str, tenant_id: int, n: int, priority: str) -> int:
    body = {
        "priority": priority,
        "recipientEmail": f"probe{n}@example.com",
        "recipientName": f"Probe {n}",
        "subject": f"First-run probe {n}",
        "template": "document-expiry",
        "data": PROBE_DATA,
        "tenantId": tenant_id,
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/jobs/email",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http to 127.0.0.1)
        return int(json.load(response)["id"])


def workers_registered(conn: psycopg.Connection) -> bool:
    try:
        return bool(conn.execute("SELECT count(*) FROM kgc_workerprocess").fetchone()[0])
    except psycopg.errors.UndefinedTable:  # not migrated yet
        conn.rollback()
        return False


def api_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to probe after the workers start")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between probes")
    parser.add_argument("--tenants", type=int, default=20, help="demo firms (make run's DEMO_TENANTS)")
    parser.add_argument("--priority", default="normal", choices=("urgent", "high", "normal", "low"))
    args = parser.parse_args()

    server_url = os.environ["DATABASE_URL"]
    scratch_url = admin_url(server_url, SCRATCH)
    recreate(server_url, SCRATCH)
    smtp = SmtpServer()
    token = "first-run-" + os.urandom(8).hex()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": scratch_url,
        "DEBUG": "true",
        "PORT": str(port),
        "DEMO_TENANTS": str(args.tenants),
        "KGC_API_TOKENS": token,
        "PYTHONUNBUFFERED": "1",
        **smtp.env(),
    }
    for name in ("DJANGO_SETTINGS_MODULE", "KGC_RATE_LIMITS", "KGC_PROCESSES"):
        env.pop(name, None)
    log = Path(tempfile.mkdtemp(prefix="kgc-first-run-")) / "make-run.log"
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; make run's output in {log}")
    dev = DevRun(env, log)
    probes: list[dict[str, float | int]] = []
    try:
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            wait_until(lambda: workers_registered(conn) or not dev.alive(), 600, "make run's workers")
            if not dev.alive():
                raise SystemExit(f"make run stopped; see {log}")
            up = time.monotonic()
            wait_until(lambda: api_answers(port), 120, "make run's web server")
            print(f"workers registered {up - dev.started:.1f} s after make run started (migrate, demo data, admin)")
            n = 0
            while time.monotonic() - up < args.minutes * 60:
                row = conn.execute(IDLE_FIRM).fetchone()
                if row is None:
                    print("no demo firm is without waiting email at this moment; the probe waits")
                else:
                    waiting, urgent = conn.execute(WAITING).fetchone()
                    asked = time.monotonic()
                    email_id = api_email(port, token, row[0], n, args.priority)
                    probes.append(
                        {"id": email_id, "at": asked, "since_up": asked - up, "waiting": waiting, "urgent": urgent}
                    )
                    n += 1
                time.sleep(args.every)
            # The last probes have a minute to arrive (the target) plus the limit's slack.
            deadline = time.monotonic() + 120
            ids = {int(probe["id"]) for probe in probes}
            while time.monotonic() < deadline:
                if ids <= {email for _tenant, email, _at in smtp.arrivals()}:
                    break
                time.sleep(0.5)
            arrived = {email: at for _tenant, email, at in smtp.arrivals()}
            sent_total = conn.execute(
                "SELECT count(*) FROM notifications_outboundemail WHERE status = 'sent'"
            ).fetchone()
    finally:
        dev.stop()
        smtp.stop()
        recreate(server_url, SCRATCH, drop_only=True)

    print(f"{'after workers up':>17} {'waiting':>8} {'urgent':>7} {'sent after':>11} {'FIFO baseline':>14}")
    waits: list[float] = []
    for probe in probes:
        at = arrived.get(int(probe["id"]))
        wait = None if at is None else at - float(probe["at"])
        fifo = float(probe["waiting"]) * 60 / LIMIT_PER_MINUTE
        if wait is not None:
            waits.append(wait)
        shown = "not sent" if wait is None else f"{wait:.2f} s"
        print(f"{probe['since_up']:>15.0f} s {probe['waiting']:>8} {probe['urgent']:>7} {shown:>11} {fifo:>12.0f} s")
    missing = len(probes) - len(waits)
    if waits:
        print(
            f"{len(probes)} probes ({args.priority}): median {statistics.median(waits):.1f} s, worst {max(waits):.1f} s"
            f"{f', {missing} not sent within 2 min of the last probe' if missing else ''}; "
            f"{sent_total[0]} emails sent in all   (target: within 60 s)"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
