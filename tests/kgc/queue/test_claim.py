"""The batch claim (``kgc_fetch_jobs``): pause, rate limits, priorities, locks and fencing in one statement."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, transaction

from kgc.queue import jobs

pytestmark = pytest.mark.django_db


def test_claims_up_to_the_wanted_number_per_queue_in_priority_order(worker_row, job_row, claim, sql):
    worker = worker_row()
    low = [job_row(priority=-100) for _ in range(3)]
    high = job_row(priority=-1)
    other = job_row(queue="filing-reminder", task="tests.noop_filing_reminder")
    claimed = claim(worker, {"email": 2, "filing-reminder": 5})
    assert [row[0] for row in claimed] == sorted([high, low[0], other])
    assert sql("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND worker_id = %s", [worker]) == [(3,)]


def test_a_paused_queue_yields_nothing_while_others_still_do(worker_row, job_row, claim):
    worker = worker_row()
    job_row(queue="email")
    other = job_row(queue="filing-reminder", task="tests.noop_filing_reminder")
    jobs.pause_queue("email")
    assert [row[0] for row in claim(worker, {"email": 5, "filing-reminder": 5})] == [other]


def test_a_pause_between_two_batches_stops_the_second(worker_row, job_row, claim):
    worker = worker_row()
    waiting = [job_row() for _ in range(6)]
    first = claim(worker, {"email": 3})
    jobs.pause_queue("email")
    assert claim(worker, {"email": 3}) == []
    jobs.resume_queue("email")
    second = claim(worker, {"email": 3})
    assert sorted(row[0] for row in first + second) == waiting


def test_a_rate_limit_cuts_the_batch_to_what_the_window_allows(worker_row, job_row, claim, sql):
    worker = worker_row()
    for _ in range(10):
        job_row()
    assert len(claim(worker, {"email": 8}, limits={"email": (5, 60.0)})) == 5
    assert claim(worker, {"email": 8}, limits={"email": (5, 60.0)}) == []  # the window is used up
    assert sql("SELECT sum(starts) FROM kgc_ratelimitslot WHERE queue_name = 'email'") == [(5,)]


def test_a_rate_limit_counts_starts_already_in_the_window(worker_row, job_row, claim):
    worker = worker_row()
    for _ in range(10):
        job_row()
    assert len(claim(worker, {"email": 3}, limits={"email": (5, 60.0)})) == 3
    assert len(claim(worker, {"email": 3}, limits={"email": (5, 60.0)})) == 2


def test_a_batch_takes_one_job_per_lock_in_order(worker_row, job_row, claim):
    worker = worker_row()
    first = job_row(lock="tenant-7")
    job_row(lock="tenant-7")
    free = job_row()
    assert [row[0] for row in claim(worker, {"email": 5})] == [first, free]
    assert claim(worker, {"email": 5}) == []  # the second waits while the first runs


def test_a_delayed_job_is_not_claimed_before_its_time(worker_row, job_row, claim, sql):
    worker = worker_row()
    job_row(scheduled_at=None)
    sql("UPDATE procrastinate_jobs SET scheduled_at = now() + interval '1 hour'")
    assert claim(worker, {"email": 5}) == []


def test_a_worker_declared_dead_claims_nothing_and_is_told_so(worker_row, job_row, claim, sql):
    worker = worker_row()
    job = job_row()
    sql("DELETE FROM procrastinate_workers WHERE id = %s", [worker])
    with pytest.raises(DatabaseError) as raised, transaction.atomic():
        claim(worker, {"email": 5})
    assert isinstance(raised.value.__cause__, psycopg.Error) and raised.value.__cause__.sqlstate == "KGC01"
    assert sql("SELECT status::text FROM procrastinate_jobs WHERE id = %s", [job]) == [("todo",)]


def test_jobs_claimed_under_a_registration_but_not_held_go_back_unstarted(worker_row, job_row, claim, sql):
    """A claim whose answer was lost (its connection severed after the commit) is reconciled."""
    from kgc.queue import sql as queue_sql

    worker = worker_row()
    held, lost = job_row(), job_row(queueing_lock="refresh:7")
    claim(worker, {"email": 5})
    released = sql(queue_sql.RECONCILE, {"worker_id": worker, "held": [held]})
    assert released == [(lost,)]
    assert sql("SELECT id, status::text, attempts, worker_id, queueing_lock FROM procrastinate_jobs ORDER BY id") == [
        (held, "doing", 0, worker, None),
        (lost, "todo", 0, None, "refresh:7"),
    ]
