"""Queue benchmark: throughput, pickup latency and the stats query, side by side with its peers.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.queue [--jobs 3000]

In one run, on DATABASE_URL's server, with no-op jobs, rounds interleaved (this machine is
noisy, so every figure has its baselines from the same minutes):

* bare procrastinate (its own schema and worker, scratch database ``kgc_qbench_bare``);
* this project's worker, one process (``runworkers --processes 1``, database ``kgc_qbench``);
* this project's worker with ``--processes`` at the CPU count;
* BullMQ 6 on its PostgreSQL backend, concurrency 4 and 10 (``bench/peers/bullmq``, its own
  scratch database; needs Node and npm, ``--no-bullmq`` skips it);
* this project's worker, one process, with OpenTelemetry configured (``OTEL_TRACES_EXPORTER=console``,
  its output thrown away): a span per run, built and exported, against the same worker with
  the OTEL_* variables unset.

Then the cost of a defer (``jobs.job_defer``) with OpenTelemetry unset and configured.
``--only-tracing`` measures only those two, in interleaved rounds.

Throughput counts from the first job's start to the last one's end. Then pickup latency
(defer to start, one job at a time, idle worker) and the stats query with a million jobs.
Figures, not assertions.
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


# Traces, as an operator turns them on; the console exporter's output goes nowhere.
TRACED = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "kgc-bench"}


def env_for(url: str, concurrency: int = 10, **extra: str) -> dict[str, str]:
    untraced = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    return {
        **untraced,
        **extra,
        "DEBUG": "false",
        "SECRET_KEY": "bench",
        "DATABASE_URL": url,
        "KGC_EXTRA_TASK_MODULES": "bench.tasks",
        # The limit code path runs on every claim, with a limit too high to hold anything back.
        "KGC_RATE_LIMITS": "email=1000000/60s",
        "KGC_CONCURRENCY": f"email={concurrency}",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


def manage(url: str, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env_for(url), check=True)


# --- Workers ------------------------------------------------------------------------------


def ours(processes: int, concurrency: int, **extra: str):  # noqa: ANN201
    def start(url: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "manage.py", "runworkers", "--queues", "email", "--processes", str(processes)],
            cwd=ROOT, env=env_for(url, concurrency, **extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    return start


def bare(concurrency: int):  # noqa: ANN201
    def start(url: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "BENCH_BARE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(
            [sys.executable, "-m", "procrastinate", "--app=bench.bare_app.app", "worker", "-q", "email",
             "-c", str(concurrency)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    return start


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
    """Milliseconds from a job's insert to its start, one job at a time, worker idle.

    The producer keeps one connection, as an application does, and nothing is truncated
    between samples: a TRUNCATE would make the worker's next claim replan its statements.
    """
    worker = start_worker(url)
    latencies = []
    try:
        wait_registered(url)
        time.sleep(1)
        with psycopg.connect(url, autocommit=True) as producer, psycopg.connect(url, autocommit=True) as observer:
            for _ in range(samples):
                [job_id] = producer.execute(
                    """SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW('email', %s, -100, NULL, NULL, '{}'::jsonb,
                           NULL)::procrastinate_job_to_defer_v1]))""",
                    [task],
                ).fetchone()
                while observer.execute(
                    "SELECT status = 'todo' FROM procrastinate_jobs WHERE id = %s", [job_id]
                ).fetchone()[0]:
                    time.sleep(0.001)
                latencies.append(
                    observer.execute(
                        """SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'started')
                                                 - max(at) FILTER (WHERE type = 'deferred')) * 1000
                             FROM procrastinate_events WHERE job_id = %s""",
                        [job_id],
                    ).fetchone()[0]
                )
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
        "from kgc.queue.jobs import get_all_queue_stats;"
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


DEFER_SCRIPT = """
import json, time, django
django.setup()
import bench.tasks
from kgc.queue import jobs, tracing
times = []
for _ in range({count}):
    start = time.perf_counter()
    jobs.job_defer(task_name="bench.noop", kwargs={{}})
    times.append((time.perf_counter() - start) * 1e6)
print("RESULT " + json.dumps({{"traced": tracing.enabled(), "us": times}}), flush=True)
"""


def defer_timing(url: str, count: int, **extra: str) -> list[float]:
    """Microseconds per ``job_defer`` (each its own transaction), in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-c", DEFER_SCRIPT.format(count=count)], cwd=ROOT,
        env={**env_for(url, **extra), "DJANGO_SETTINGS_MODULE": "kgc.settings"}, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    # With the console exporter the spans share standard output (some written at exit, after this line).
    found = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    if found["traced"] != bool(extra):
        raise RuntimeError(f"tracing was {'on' if found['traced'] else 'off'}, not as asked")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events CASCADE")
    return found["us"]


def defer_cost(url: str, *, rounds: int, count: int) -> None:
    untraced_us: list[float] = []
    traced_us: list[float] = []
    for _ in range(rounds):  # interleaved, as the throughput rounds
        untraced_us += defer_timing(url, count)
        traced_us += defer_timing(url, count, **TRACED)
    for label, values in (("unset     ", untraced_us), ("configured", traced_us)):
        print(
            f"job_defer, OpenTelemetry {label}: median {statistics.median(values):.0f} us, "
            f"p95 {percentile(values, 95):.0f} us ({len(values):,} defers)"
        )


def tracing_cost(url: str, args: argparse.Namespace) -> None:
    """``--only-tracing``: the worker (one process) and a defer, OpenTelemetry unset and configured."""
    rates: dict[str, list[float]] = {"unset": [], "configured": []}
    for _ in range(args.rounds):
        rates["unset"].append(throughput(url, args.jobs, "bench.noop", ours(1, args.concurrency)))
        rates["configured"].append(throughput(url, args.jobs, "bench.noop", ours(1, args.concurrency, **TRACED)))
    for label, found in rates.items():
        print(f"throughput, KGC worker, 1 process, OpenTelemetry {label:<10}  {rates_text(found)}")
    print(f"configured / unset: {max(rates['configured']) / max(rates['unset']):.2f}x (best against best)")
    defer_cost(url, rounds=args.rounds, count=args.defers)


def rates_text(rates: list[float]) -> str:
    return f"{', '.join(f'{r:,.0f}' for r in rates)} jobs/s (best {max(rates):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per worker process")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="for the multi-process figure")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--stats-rows", type=int, default=1_000_000)
    parser.add_argument("--no-bullmq", action="store_true", help="skip the BullMQ peer (no Node)")
    parser.add_argument("--defers", type=int, default=2000, help="defers timed with and without OpenTelemetry")
    parser.add_argument(
        "--only-tracing", action="store_true", help="only the worker and a defer, OpenTelemetry unset and configured"
    )
    parser.add_argument(
        "--database-prefix", default=OURS, help=f"names of the scratch databases (default {OURS}, {BARE})"
    )
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = database_url(base, "postgres")
    ours_name, bare_name = args.database_prefix, f"{args.database_prefix}_bare"
    ours_url, bare_url = database_url(base, ours_name), database_url(base, bare_name)
    recreate(admin, ours_name)
    recreate(admin, bare_name)
    if not args.no_bullmq:
        from bench.peers.bullmq import npm_ci_if_needed

        npm_ci_if_needed()
    try:
        manage(ours_url, "migrate", "-v", "0")
        subprocess.run(
            [sys.executable, "-c", "from bench.bare_app import app; app.open(); app.schema_manager.apply_schema()"],
            cwd=ROOT, env={**os.environ, "BENCH_BARE_DATABASE_URL": bare_url, "PYTHONPATH": str(ROOT)}, check=True,
        )  # fmt: skip
        print(
            f"jobs per round: {args.jobs:,}, rounds: {args.rounds}, concurrency {args.concurrency} per process, "
            f"{os.cpu_count()} CPUs, load avg {os.getloadavg()}"
        )
        if args.only_tracing:
            tracing_cost(ours_url, args)
            return
        contenders = {
            f"bare procrastinate (concurrency {args.concurrency})": lambda: throughput(
                bare_url, args.jobs, "bench.noop", bare(args.concurrency)
            ),
            "KGC worker, 1 process": lambda: throughput(ours_url, args.jobs, "bench.noop", ours(1, args.concurrency)),
            f"KGC worker, {args.processes} processes": lambda: throughput(
                ours_url, args.jobs, "bench.noop", ours(args.processes, args.concurrency)
            ),
            "KGC worker, 1 process, OpenTelemetry configured": lambda: throughput(
                ours_url, args.jobs, "bench.noop", ours(1, args.concurrency, **TRACED)
            ),
        }
        if not args.no_bullmq:
            from bench.peers.bullmq import bullmq_throughput

            for concurrency in (4, 10):
                contenders[f"BullMQ 6.7 on PostgreSQL (concurrency {concurrency})"] = lambda c=concurrency: (
                    bullmq_throughput(base, jobs=args.jobs, concurrency=c)["jobs_per_s"]
                )
        results: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike
            for name, measure in contenders.items():
                results[name].append(measure())
        width = max(map(len, results))
        for name, rates in results.items():
            print(f"throughput, {name:<{width}}  {rates_text(rates)}")
        best = {name: max(rates) for name, rates in results.items()}
        one, many = best["KGC worker, 1 process"], best[f"KGC worker, {args.processes} processes"]
        print(f"KGC, 1 process / bare procrastinate: {one / best[next(iter(best))]:.2f}x   (target: 2,000 jobs/s)")
        for name in [n for n in best if n.startswith("BullMQ")]:
            print(f"KGC, {args.processes} processes / {name}: {many / best[name]:.2f}x   (target >= 1.0x)")
        traced = best["KGC worker, 1 process, OpenTelemetry configured"]
        print(f"KGC, 1 process, OpenTelemetry configured / unset: {traced / one:.2f}x")
        defer_cost(ours_url, rounds=args.rounds, count=args.defers)

        latency = {
            "bare procrastinate": pickup_latency(bare_url, args.samples, "bench.noop", bare(args.concurrency)),
            "KGC worker        ": pickup_latency(ours_url, args.samples, "bench.noop", ours(1, args.concurrency)),
        }
        if not args.no_bullmq:
            from bench.peers.bullmq import bullmq_latency

            figures = bullmq_latency(base, samples=args.samples, concurrency=10)
            print(
                f"defer-to-start latency, BullMQ 6.7         : p50 {figures['p50_ms']:.1f} ms, "
                f"p95 {figures['p95_ms']:.1f} ms, max {figures['max_ms']:.1f} ms"
            )
        for label, values in latency.items():
            print(
                f"defer-to-start latency, {label}: p50 {percentile(values, 50):.1f} ms, "
                f"p95 {percentile(values, 95):.1f} ms, max {max(values):.1f} ms  (target p95 < 10 ms)"
            )

        stats_ms, naive_ms = stats_timing(ours_url, args.stats_rows)
        print(
            f"get_all_queue_stats() with {args.stats_rows:,} jobs: median {statistics.median(stats_ms):.2f} ms, "
            f"p95 {percentile(stats_ms, 95):.2f} ms  (target < 100 ms); "
            f"a plain GROUP BY over the jobs table: median {statistics.median(naive_ms):.0f} ms"
        )
    finally:
        drop(admin, ours_name)
        drop(admin, bare_name)


if __name__ == "__main__":
    main()
