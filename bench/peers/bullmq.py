"""BullMQ 6 on its PostgreSQL backend, no-op jobs: throughput and pickup latency.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.peers.bullmq [--jobs 3000]

Needs Node 18 or newer and npm. The peer lives in ``bench/peers/bullmq/`` (its own
``package.json`` and lockfile, installed with ``npm ci`` when ``node_modules`` is missing or
older than the lockfile). Each measurement creates the scratch database ``kgc_qbench_bullmq``
on DATABASE_URL's server, lets BullMQ migrate its schema there, runs ``bench.mjs`` and drops
the database, so every round starts from empty tables. No Redis is involved: the script builds
every Queue and Worker with ``createPostgresBackend`` and no Redis client is installed.

Throughput: N jobs added with one ``addBulk``, then one Worker with the given concurrency;
jobs/s from the first job start to the last job completion. Latency: an idle worker, one job
at a time, from just before ``queue.add()`` to the processor's start. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

PEER_DIR = Path(__file__).resolve().parent / "bullmq"
SCRATCH = "kgc_qbench_bullmq"


def _url_for(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def _drop_scratch(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


def npm_ci_if_needed() -> None:
    """Install the peer from its lockfile unless ``node_modules`` is already newer than it."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise RuntimeError("the BullMQ peer needs Node 18 or newer and npm on PATH")
    lockfile = PEER_DIR / "package-lock.json"
    installed = PEER_DIR / "node_modules" / ".package-lock.json"  # written by every npm ci
    if installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime:
        return
    # --include=dev: the peer's packages are dev dependencies, and NODE_ENV=production would omit them.
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--include=dev", "--loglevel=error"], cwd=PEER_DIR, check=True
    )


def _run(database_url: str, *args: str) -> dict[str, Any]:
    """Run ``bench.mjs`` against a fresh scratch database on ``database_url``'s server."""
    npm_ci_if_needed()
    admin = _url_for(database_url, "postgres")
    _drop_scratch(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{SCRATCH}"')
    try:
        out = subprocess.run(
            ["node", "bench.mjs", "--url", _url_for(database_url, SCRATCH), *args],
            cwd=PEER_DIR, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        _drop_scratch(admin)
    if out.returncode:
        raise RuntimeError(f"bench.mjs failed ({out.returncode}):\n{out.stderr.strip()}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["load_avg"] = os.getloadavg()
    return figures


def bullmq_throughput(database_url: str, *, jobs: int, concurrency: int, count_queries: bool = False) -> dict[str, Any]:
    """No-op jobs per second through one BullMQ Worker with ``concurrency``, on PostgreSQL.

    Returns ``jobs_per_s`` (first start to last completion, in the worker's process) with
    ``db_span_jobs_per_s`` (the same span from the job rows), ``add_bulk_jobs_per_s``, and
    ``per_job``: transactions and tuples per job from ``pg_stat_database`` over the processing
    phase. ``count_queries`` adds ``round_trips_per_job`` by SQL command (it wraps the backend).
    """
    args = ["--mode", "throughput", "--jobs", str(jobs), "--concurrency", str(concurrency)]
    return _run(database_url, *args, *(["--count-queries"] if count_queries else []))


def bullmq_latency(database_url: str, *, samples: int, concurrency: int) -> dict[str, Any]:
    """Add-to-start latency of an idle BullMQ Worker on PostgreSQL: ``p50_ms``, ``p95_ms``, ``max_ms``."""
    return _run(database_url, "--mode", "latency", "--samples", str(samples), "--concurrency", str(concurrency))


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 10])
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

    npm_ci_if_needed()
    print(f"BullMQ on PostgreSQL: {args.jobs} jobs per round, {args.rounds} rounds, load avg {_load()}")
    rates: dict[int, list[float]] = {c: [] for c in args.concurrency}
    for round_no in range(1, args.rounds + 1):  # interleaved, so drift in machine load hits each alike
        for concurrency in args.concurrency:
            figures = bullmq_throughput(base, jobs=args.jobs, concurrency=concurrency)
            rates[concurrency].append(figures["jobs_per_s"])
            per_job = figures["per_job"]
            print(
                f"  round {round_no}, concurrency {concurrency:>2}: {figures['jobs_per_s']:.0f} jobs/s "
                f"(addBulk {figures['add_bulk_jobs_per_s']:.0f} jobs/s; per job {per_job['xact_commit']:.2f} commits, "
                f"{per_job['tup_inserted']:.2f} rows inserted, {per_job['tup_updated']:.2f} updated)  "
                f"load avg {_load()}"
            )
    for concurrency, values in rates.items():
        print(
            f"throughput, BullMQ concurrency {concurrency:>2}: {', '.join(f'{r:.0f}' for r in values)} jobs/s "
            f"(best {max(values):.0f}, median {statistics.median(values):.0f})"
        )
    for concurrency in args.concurrency:
        lat = bullmq_latency(base, samples=args.samples, concurrency=concurrency)
        print(
            f"add-to-start latency, BullMQ concurrency {concurrency:>2}: p50 {lat['p50_ms']:.1f} ms, "
            f"p95 {lat['p95_ms']:.1f} ms, max {lat['max_ms']:.1f} ms  load avg {_load()}"
        )


if __name__ == "__main__":
    sys.exit(main())
