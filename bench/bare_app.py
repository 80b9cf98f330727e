"""Bare procrastinate, for the baseline: its own schema, a psycopg pool, the same no-op task."""

import os

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_BARE_DATABASE_URL"]))


@app.task(queue="email", name="bench.noop")
def noop() -> None:
    return None
