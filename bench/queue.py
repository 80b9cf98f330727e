"""Queue-layer benchmark: throughput, pickup latency and the stats query, against bare procrastinate.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/queue.py [--jobs 3000]

Creates two scratch databases on DATABASE_URL's server and drops them afterwards:
``kgc_qbench`` (the project's migrations: pause, rate limits, counters, failure
records) and ``kgc_qbench_bare`` (procrastinate's own schema only). Both are
measured in the same run, on the same server, with the same no-op sync task, the
same concurrency (5, the email queue's) and the same database timestamps, because
this machine is noisy. Figures, not assertions.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and its name would shadow
# the standard library's ``queue`` (which psycopg imports): put the project root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import psycopg  # noqa: E402

OURS, BARE = "kgc_qbench", "kgc_qbench_bare"
CONCURRENCY = 5
# The worker also defers the scheduler's catch-up ticks on the maintenance queue: count email only.
EMAIL_PENDING = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'email' AND status IN ('todo', 'doing')"


def database_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": url,
        "KGC_EXTRA_TASK_MODULES": "bench.tasks",
        # The limit code path runs on every fetch, with a limit too high to hold anything back.
        "KGC_RATE_LIMITS": "email=1000000/60s",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


def manage(url: str, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env_for(url), check=True)


# --- Workers ------------------------------------------------------------------------------


def start_ours(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworkers", "--queues", "email"],
        cwd=ROOT, env=env_for(url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_bare(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_BARE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "procrastinate", "--app=bench.bare_app.app", "worker", "-q", "email",
         "-c", str(CONCURRENCY)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=60)


def wait_registered(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(600):
            if conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]:
                return
            time.sleep(0.05)
    raise RuntimeError("worker did not start")


# --- Measurements -------------------------------------------------------------------------


def defer_noops(url: str, count: int, task: str) -> None:
    """Insert ``count`` waiting jobs in one statement (the same SQL function procrastinate uses)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """SELECT procrastinate_defer_jobs_v1(array_agg(ROW('email', %s, -100, NULL, NULL, '{}'::jsonb, NULL)
                   ::procrastinate_job_to_defer_v1)) FROM generate_series(1, %s)""",
            [task, count],
        )


def throughput(url: str, count: int, task: str, start_worker) -> float:  # noqa: ANN001
    defer_noops(url, count, task)
    worker = start_worker(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute(EMAIL_PENDING).fetchone()[0]:
                time.sleep(0.2)
            first, last = conn.execute(
                """SELECT min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type = 'succeeded')
                     FROM procrastinate_events JOIN procrastinate_jobs j ON j.id = job_id AND j.queue_name = 'email'"""
            ).fetchone()
            failed = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'email' AND status <> 'succeeded'"
            ).fetchone()[0]
            if failed:
                raise RuntimeError(f"{failed} jobs did not succeed")
            conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events CASCADE")
    finally:
        stop(worker)
    return count / (last - first).total_seconds()


def pickup_latency(url: str, samples: int, task: str, start_worker) -> list[float]:  # noqa: ANN001
    """Milliseconds from a job's insert to its start, one job at a time, worker idle."""
    worker = start_worker(url)
    latencies = []
    try:
        wait_registered(url)
        time.sleep(1)
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(samples):
                defer_noops(url, 1, task)
                while conn.execute(EMAIL_PENDING).fetchone()[0]:
                    time.sleep(0.005)
                latencies.append(
                    conn.execute(
                        """SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'started')
                                                 - max(at) FILTER (WHERE type = 'deferred')) * 1000
                             FROM procrastinate_events
                             JOIN procrastinate_jobs j ON j.id = job_id AND j.queue_name = 'email'"""
                    ).fetchone()[0]
                )
                conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events CASCADE")
                time.sleep(0.02)
    finally:
        stop(worker)
    return [float(x) for x in latencies]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def stats_timing(url: str, rows: int) -> tuple[list[float], list[float]]:
    """The stats query (ms) with ``rows`` jobs, and a naive GROUP BY over the jobs table for comparison."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO procrastinate_jobs (queue_name, task_name, status, args)
               SELECT (ARRAY['compliance','expiry-notification','filing-reminder','email'])[1 + i %% 4], 'bench.noop',
                      (ARRAY['succeeded','succeeded','succeeded','succeeded','failed','todo','doing','cancelled']
                       ::procrastinate_job_status[])[1 + i %% 8], '{}'
                 FROM generate_series(1, %s) AS i""",
            [rows],
        )
        conn.execute("VACUUM ANALYZE procrastinate_jobs")
        conn.execute("SELECT kgc_job_counts_compact()")
    env = env_for(url)
    script = (
        "import time, json, django; django.setup();"
        "from kgc.jobs import get_all_queue_stats;"
        "from django.db import connection;"
        "t=[];n=[]\n"
        "for _ in range(30):\n"
        " s=time.perf_counter(); get_all_queue_stats(); t.append((time.perf_counter()-s)*1000)\n"
        "for _ in range(5):\n"
        " s=time.perf_counter(); c=connection.cursor(); c.execute("
        '"SELECT queue_name, status, count(*) FROM procrastinate_jobs GROUP BY 1, 2"); c.fetchall();'
        " n.append((time.perf_counter()-s)*1000)\n"
        "print(json.dumps([t, n]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "kgc.settings"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ours, naive = json.loads(out.stdout.strip().splitlines()[-1])
    return ours, naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--stats-rows", type=int, default=1_000_000)
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = database_url(base, "postgres")
    ours, bare = database_url(base, OURS), database_url(base, BARE)
    recreate(admin, OURS)
    recreate(admin, BARE)
    try:
        manage(ours, "migrate", "-v", "0")
        subprocess.run(
            [sys.executable, "-c", "from bench.bare_app import app; app.open(); app.schema_manager.apply_schema()"],
            cwd=ROOT, env={**os.environ, "BENCH_BARE_DATABASE_URL": bare, "PYTHONPATH": str(ROOT)}, check=True,
        )  # fmt: skip
        print(
            f"jobs per round: {args.jobs}, rounds: {args.rounds}, concurrency {CONCURRENCY}, load avg {os.getloadavg()}"
        )

        ours_rates, bare_rates = [], []
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
            bare_rates.append(throughput(bare, args.jobs, "bench.noop", start_bare))
            ours_rates.append(throughput(ours, args.jobs, "bench.noop", start_ours))
        best_ours, best_bare = max(ours_rates), max(bare_rates)
        print(
            f"throughput, bare procrastinate: {', '.join(f'{r:.0f}' for r in bare_rates)} jobs/s (best {best_bare:.0f})"
        )
        print(
            f"throughput, KGC queue layer:    {', '.join(f'{r:.0f}' for r in ours_rates)} jobs/s (best {best_ours:.0f})"
        )
        print(f"ratio KGC / bare (best of each): {best_ours / best_bare:.2f}x   (target >= 0.90x)")

        bare_lat = pickup_latency(bare, args.samples, "bench.noop", start_bare)
        ours_lat = pickup_latency(ours, args.samples, "bench.noop", start_ours)
        for label, values in (("bare procrastinate", bare_lat), ("KGC queue layer   ", ours_lat)):
            print(
                f"defer-to-start latency, {label}: p50 {percentile(values, 50):.1f} ms, "
                f"p95 {percentile(values, 95):.1f} ms, max {max(values):.1f} ms  (target p95 < 50 ms)"
            )

        stats_ms, naive_ms = stats_timing(ours, args.stats_rows)
        print(
            f"get_all_queue_stats() with {args.stats_rows:,} jobs: median {statistics.median(stats_ms):.2f} ms, "
            f"p95 {percentile(stats_ms, 95):.2f} ms  (target < 100 ms); "
            f"a plain GROUP BY over the jobs table: median {statistics.median(naive_ms):.0f} ms"
        )
    finally:
        drop(admin, OURS)
        drop(admin, BARE)


if __name__ == "__main__":
    main()
