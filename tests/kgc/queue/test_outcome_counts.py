"""Outcome counters (``JobOutcomeCount``): every statement that ends an attempt counts it, and
nothing that deletes jobs lowers the counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from kgc.queue import jobs
from kgc.queue.sql import RECONCILE, REQUEUE, RESCUE
from kgc.queues import QUEUES
from tests.kgc.queue.test_finish import claimed, finish, outcome

INF = float("inf")


def counters(sql) -> list[tuple]:
    """The counter rows as (queue, outcome, le, jobs), summed over rows of the same key."""
    return sql(
        """SELECT queue_name, outcome, le, sum(jobs)::int FROM kgc_joboutcomecount
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 NULLS FIRST"""
    )


@pytest.mark.django_db(transaction=True)
def test_a_batch_finish_counts_each_outcome_and_the_run_times_the_worker_measured(sql, link, worker_row, job_row):
    worker = worker_row()
    done, failed, retried, aborted = (claimed(sql, job_row(), worker) for _ in range(4))
    finish(
        link,
        [
            replace(outcome(done), duration=3.2),
            replace(outcome(failed, "failed"), duration=0.05),
            replace(outcome(retried, "todo", retry_in=timedelta(1)), duration=0.2),
            replace(outcome(aborted, "aborted"), duration=0.3),
        ],
    )
    assert counters(sql) == [
        ("email", "failed", None, 2),  # failed for good, and aborted
        ("email", "retried", None, 1),
        ("email", "succeeded", None, 1),
        ("email", "timed", 0.1, 1),  # the jobs that succeeded or failed for good, by run time
        ("email", "timed", 5.0, 1),
    ]
    # One row per (queue, outcome, bucket) for the statement, not one per job.
    assert sql("SELECT count(*) FROM kgc_joboutcomecount") == [(5,)]
    assert sql("SELECT sum(seconds) FROM kgc_joboutcomecount WHERE outcome = 'timed'") == [(pytest.approx(3.25),)]


@pytest.mark.django_db
def test_a_statement_that_ends_no_attempt_counts_nothing(sql, job_row):
    job_row()
    sql("UPDATE procrastinate_jobs SET status = 'doing'")  # a claim
    sql("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE status = 'todo'")
    assert counters(sql) == []


@pytest.mark.django_db
def test_the_rescue_counts_retries_and_failures_of_a_dead_workers_jobs(sql):
    [(dead,)] = sql(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
    )
    last_try = QUEUES["compliance"].retry.max_attempts - 1
    for attempts in (0, 0, last_try):
        sql(
            """INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id, attempts)
               VALUES ('compliance', 'tests.noop_compliance', 'doing', %s, %s)""",
            [dead, attempts],
        )
    sql(
        RESCUE,
        {
            "dead_after": 20,
            "queues": list(QUEUES),
            "max_attempts": [q.retry.max_attempts for q in QUEUES.values()],
            "keep_locks": True,
        },
    )
    # The failed one has no 'started' event (inserted running): counted, not timed.
    assert counters(sql) == [("compliance", "failed", None, 1), ("compliance", "retried", None, 2)]


@pytest.mark.django_db
def test_a_job_requeued_at_the_shutdown_timeout_counts_as_retried(sql, worker_row, job_row):
    worker = worker_row()
    job = claimed(sql, job_row("compliance", "tests.noop_compliance"), worker)
    sql(
        REQUEUE,
        {"job_id": job.job.id, "attempts": 0, "worker_id": worker, "message": "still running", "max_attempts": 3},
    )
    assert counters(sql) == [("compliance", "retried", None, 1)]


@pytest.mark.django_db
def test_a_job_put_back_unstarted_is_no_retry(sql, worker_row, job_row):
    """A claim whose answer was lost: the job goes back with no attempt used."""
    worker = worker_row()
    claimed(sql, job_row(), worker)
    assert sql(RECONCILE, {"worker_id": worker, "held": []})
    assert counters(sql) == []


@pytest.mark.django_db
def test_cleanup_and_retention_leave_the_totals_as_they_were(sql, worker_row, job_row):
    worker = worker_row()
    job = claimed(sql, job_row("compliance", "tests.noop_compliance"), worker)
    sql("UPDATE procrastinate_jobs SET status = 'succeeded', attempts = 1 WHERE id = %s", [job.job.id])
    before = jobs.job_outcome_totals(["compliance"])["compliance"]
    jobs.cleanup_queue("compliance", completed_age=timedelta(0), now=timezone.now() + timedelta(hours=1))
    assert sql("SELECT count(*) FROM procrastinate_jobs") == [(0,)]
    assert jobs.job_outcome_totals(["compliance"])["compliance"] == before
    assert before.succeeded == 1


@pytest.mark.django_db
def test_compaction_folds_the_rows_and_keeps_the_sums(sql, worker_row, job_row):
    worker = worker_row()
    for _ in range(3):
        job = claimed(sql, job_row(), worker)
        sql("UPDATE procrastinate_jobs SET status = 'succeeded', attempts = 1 WHERE id = %s", [job.job.id])
    before = jobs.job_outcome_totals(["email"])
    assert sql("SELECT count(*) FROM kgc_joboutcomecount") == [(3,)]
    jobs.job_counts_compact()
    assert sql("SELECT count(*) FROM kgc_joboutcomecount") == [(1,)]
    assert jobs.job_outcome_totals(["email"]) == before


@pytest.mark.django_db
def test_the_database_and_the_code_declare_the_same_buckets(sql):
    assert sql("SELECT kgc_job_duration_bounds()") == [(list(jobs.DURATION_BOUNDS),)]


@pytest.mark.parametrize(
    ("le", "index"),
    [(0.1, 0), (0.5, 1), (1.0, 2), (1800.0, 7), (INF, 8), (0.3, 1), (2000.0, 8)],
    ids=["first", "second", "third", "last", "inf", "a retired bound goes up", "past the last"],
)
def test_a_stored_bound_maps_to_the_first_bucket_that_holds_it(le, index):
    assert jobs.duration_bucket(le) == index


def test_totals_fold_counts_outcomes_and_places_timed_runs_in_buckets():
    rows = [
        ("email", "succeeded", None, 5, 0.0),
        ("email", "failed", None, 3, 0.0),
        ("email", "retried", None, 3, 0.0),
        ("email", "timed", 0.1, 4, 0.2),
        ("email", "timed", INF, 1, 4000.0),
        ("email", "timed", 5.0, 1, 3.0),
        ("elsewhere", "succeeded", None, 9, 0.0),
    ]
    totals = jobs.outcome_totals_fold(rows, names=["email", "compliance"])
    assert totals["email"] == jobs.OutcomeTotals(
        succeeded=5, failed=3, retried=3, durations=(4, 0, 0, 1, 0, 0, 0, 0, 1), seconds=4003.2
    )
    assert totals["compliance"] == jobs.OutcomeTotals()
    assert "elsewhere" not in totals
