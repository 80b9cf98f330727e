from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kgc.queue import sql as queue_sql
from kgc.queue.db import Link, connection_params
from kgc.queues import rate_limits

CLAIM_COLUMNS = ("id", "queue_name", "priority", "lock")


@pytest.fixture
def worker_row(sql):
    """``worker_row(age=0)``: a registered worker's id, with a heartbeat ``age`` seconds old."""

    def make(age: float = 0) -> int:
        [(worker_id,)] = sql(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - make_interval(secs => %s)) RETURNING id",
            [age],
        )
        return worker_id

    return make


@pytest.fixture
def job_row(sql):
    """``job_row(queue, **columns)``: insert a job as procrastinate's defer does; its id."""

    def make(queue: str = "email", task: str = "tests.noop_email", **columns: Any) -> int:
        names = ["queue_name", "task_name", *columns]
        placeholders = ", ".join(["%s"] * len(names))
        [(job_id,)] = sql(
            f"INSERT INTO procrastinate_jobs ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",  # noqa: S608
            [queue, task, *columns.values()],
        )
        return job_id

    return make


@pytest.fixture
def claim(sql):
    """``claim(worker_id, {queue: want})``: what one batch claim returns, as (id, queue, priority, lock)."""

    def run(worker_id: int, wants: dict[str, int], limits: dict[str, tuple[int, float]] | None = None) -> list[tuple]:
        names = sorted(wants)
        if limits is None:
            limits = {name: (limit.limit, limit.per.total_seconds()) for name, limit in rate_limits().items()}
        limited = sorted(limits)
        rows = sql(
            f"SELECT {', '.join(CLAIM_COLUMNS)} FROM ({queue_sql.CLAIM}) AS claimed",  # noqa: S608 - constants
            {
                "queues": names,
                "wants": [wants[name] for name in names],
                "worker_id": worker_id,
                "limited": limited,
                "limits": [limits[name][0] for name in limited],
                "windows": [limits[name][1] for name in limited],
            },
        )
        return sorted(rows)

    return run


@pytest.fixture
def link(transactional_db):
    """Run one of the worker's statements on its own connection, as a duty does."""
    connection = Link("test", connection_params())

    def execute(statement: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return asyncio.run(_execute_and_drop(connection, statement, params))

    return execute


async def _execute_and_drop(link: Link, statement: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
    try:
        return await link.execute(statement, params, timeout=30)
    finally:
        await link.drop()
