"""What the console reads: queue capacity, rate-limit use, throughput, failure rate, workers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from kgc.console import selectors
from kgc.queue.models import RateLimitSlot
from tests.kgc.console.conftest import defer, events_move, fail, lease, run_on, succeed, worker_process

pytestmark = pytest.mark.django_db


def test_concurrency_is_summed_over_the_live_workers_serving_the_queue():
    worker_process(queues=("email", "compliance"), concurrency={"email": 5, "compliance": 1})
    worker_process(queues=("email",), concurrency={"email": 3})
    worker_process(queues=("email",), concurrency={"email": 7}, age=timedelta(minutes=5))  # silent
    activity = selectors.queue_activity(now=timezone.now())
    assert (activity["email"].concurrency, activity["compliance"].concurrency) == (8, 1)
    assert activity["filing-reminder"].concurrency == 0


def test_rate_limit_use_counts_the_starts_in_the_current_window():
    now = timezone.now()
    for seconds_ago, starts in ((1, 10), (30, 25), (59, 2), (125, 40)):
        RateLimitSlot.objects.create(queue_name="email", slot=now - timedelta(seconds=seconds_ago), starts=starts)
    email = selectors.queue_activity(now=now)["email"]
    assert (email.window_used, email.rate_limit_text) == (37, "37 of 100 / 60 s")


def test_a_queue_without_a_rate_limit_says_so():
    activity = selectors.queue_activity(now=timezone.now())["filing-reminder"]
    assert (activity.rate_limit, activity.window_used, activity.rate_limit_text) == (None, None, "none")


def test_throughput_is_jobs_finished_a_minute_over_5_and_60_minutes():
    for minutes_ago in (1, 2, 3, 20, 40):
        job_id = defer("filing-reminder")
        succeed(job_id)
        events_move(job_id, by=timedelta(minutes=minutes_ago))
    old = defer("filing-reminder")
    succeed(old)
    events_move(old, by=timedelta(minutes=90))
    queue = selectors.queue_activity(now=timezone.now())["filing-reminder"]
    assert (queue.per_minute_5, queue.per_minute_60, queue.covered_minutes) == (3 / 5, 5 / 60, None)


def test_failure_rate_is_failed_attempts_among_the_attempts_that_ended():
    for _ in range(3):
        succeed(defer("filing-reminder"))
    fail(defer("filing-reminder"), messages=("timeout", "refused"))  # two failed attempts, the job failed
    queue = selectors.queue_activity(now=timezone.now())["filing-reminder"]
    assert queue.failure_rate == 2 / 5  # of 5 attempts that ended (3 succeeded), 2 failed


def test_a_capped_hour_gives_the_rate_over_the_part_it_covers(monkeypatch):
    monkeypatch.setattr(selectors, "FINISHED_CAP", 2)
    for minutes_ago in (10, 20, 30):
        job_id = defer("filing-reminder")
        succeed(job_id)
        events_move(job_id, by=timedelta(minutes=minutes_ago))
    queue = selectors.queue_activity(now=timezone.now())["filing-reminder"]
    assert queue.covered_minutes == pytest.approx(20, abs=0.2)
    assert queue.per_minute_60 == pytest.approx(2 / 20, rel=0.02)


def test_workers_show_their_process_duties_lease_and_running_jobs():
    duties = {"listener": {"state": "running", "restarts": 0}, "fetch": {"state": "failing", "restarts": 2}}
    leader = worker_process(host="app-1", pid=101, queues=("email", "maintenance"), duties=duties)
    other = worker_process(host="app-2", pid=202, queues=("compliance",), age=timedelta(seconds=3))
    lease(leader)
    running = [defer("email"), defer("email")]
    for job_id in running:
        run_on(job_id, leader)
    first, second = selectors.workers_overview(now=timezone.now())
    assert (first.id, first.host, first.pid, first.queues, first.leases) == (
        leader,
        "app-1",
        101,
        ["email", "maintenance"],
        ["cluster"],
    )
    assert [(duty.name, duty.state) for duty in first.duties] == [("fetch", "failing"), ("listener", "running")]
    assert [job.id for job in first.running] == running
    assert (second.id, second.leases, second.running_total) == (other, [], 0)


def test_an_expired_lease_makes_no_leader():
    worker_id = worker_process()
    lease(worker_id, expires_in=timedelta(seconds=-1))
    assert selectors.workers_overview(now=timezone.now())[0].leases == []


def test_a_worker_without_process_details_is_still_listed():
    from django.db import connection

    with connection.cursor() as cursor:  # registered by another program: procrastinate's row only
        cursor.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        [worker_id] = cursor.fetchone()
    (view,) = selectors.workers_overview(now=timezone.now())
    assert (view.id, view.host, view.pid, view.queues, view.alive) == (worker_id, None, None, [], True)


def test_finished_series_per_queue_counts_each_queue_apart():
    succeed(defer("email"))
    succeed(defer("email"))
    fail(defer("compliance"))
    series = selectors.jobs_finished_by_queue(now=timezone.now())
    assert (sum(series.counts["email"]), sum(series.counts["compliance"]), series.covered_since) == (2, 1, None)


def test_finished_series_per_queue_says_where_the_cap_cut_it():
    jobs = [defer("email") for _ in range(3)]
    for minutes_ago, job_id in zip((30, 20, 10), jobs, strict=True):
        succeed(job_id)
        events_move(job_id, by=timedelta(minutes=minutes_ago))
    series = selectors.jobs_finished_by_queue(now=timezone.now(), cap=2)
    assert sum(series.counts["email"]) == 2
    assert series.covered_since is not None
    assert timezone.now() - series.covered_since == pytest.approx(timedelta(minutes=20), abs=timedelta(seconds=30))
