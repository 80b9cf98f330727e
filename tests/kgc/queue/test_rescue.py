"""Crash recovery's SQL against hand-made states: what happens to a dead worker's jobs."""

from __future__ import annotations

import pytest

from kgc.queue.sql import RESCUE
from kgc.queues import QUEUES

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead_worker(sql):
    [(worker_id,)] = sql(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
    )
    return worker_id


def running(sql, worker_id, *, attempts=0, queueing_lock=None, abort=False, queue="compliance"):
    [(job_id,)] = sql(
        """INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id, attempts, queueing_lock,
                                           abort_requested)
           VALUES (%s, 'tests.noop_compliance', 'doing', %s, %s, %s, %s) RETURNING id""",
        [queue, worker_id, attempts, queueing_lock, abort],
    )
    return job_id


def rescue(sql, keep_locks=True):
    return sql(
        RESCUE,
        {
            "dead_after": 20,
            "queues": list(QUEUES),
            "max_attempts": [q.retry.max_attempts for q in QUEUES.values()],
            "keep_locks": keep_locks,
        },
    )


def status(sql, job_id):
    return sql("SELECT status, attempts, queueing_lock FROM procrastinate_jobs WHERE id = %s", [job_id])[0]


def test_dead_workers_job_goes_back_as_a_new_attempt(sql, dead_worker):
    job = running(sql, dead_worker)
    assert rescue(sql) == [(job, "compliance", True)]
    assert status(sql, job) == ("todo", 1, None)


def test_dead_workers_job_out_of_attempts_fails(sql, dead_worker):
    job = running(sql, dead_worker, attempts=QUEUES["compliance"].retry.max_attempts - 1)
    assert rescue(sql) == [(job, "compliance", False)]
    assert status(sql, job)[0] == "failed"


def test_rescue_does_not_collide_with_a_waiting_job_under_the_same_queueing_lock(sql, dead_worker):
    job = running(sql, dead_worker, queueing_lock="compliance-refresh:7")
    sql(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock)"
        " VALUES ('compliance', 't', 'compliance-refresh:7')"
    )
    other = running(sql, dead_worker, queue="email")
    assert {row[0] for row in rescue(sql)} == {job, other}  # one conflict must not block every rescue
    assert status(sql, job) == ("todo", 1, None)


def test_aborted_job_of_a_dead_worker_fails_instead_of_returning(sql, dead_worker):
    job = running(sql, dead_worker, abort=True)
    rescue(sql)
    assert status(sql, job)[0] == "failed"


def test_job_of_a_live_worker_is_left_alone(sql):
    [(live,)] = sql("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now()) RETURNING id")
    job = running(sql, live)
    assert rescue(sql) == []
    assert status(sql, job)[0] == "doing"
