"""The queue layer's services against the real database: deferring, counts, pause, cleanup, retries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queue import jobs
from kgc.queue.models import JobFailure
from kgc.queues import UnknownQueue

pytestmark = pytest.mark.django_db


def defer(task="tests.noop_filing_reminder", **kwargs):
    return jobs.job_defer(task_name=task, kwargs=kwargs)[0]


def set_status(sql, job_id, status, **columns):
    sql("UPDATE procrastinate_jobs SET status = %s WHERE id = %s", [status, job_id])
    if "attempts" in columns:
        sql("UPDATE procrastinate_jobs SET attempts = %s WHERE id = %s", [columns["attempts"], job_id])


def test_deferred_job_lands_on_its_task_queue_with_its_arguments():
    job = ProcrastinateJob.objects.get(id=defer("tests.noop_compliance", tenant_id=3))
    assert (job.queue_name, job.task_name, job.args, job.status) == (
        "compliance",
        "tests.noop_compliance",
        {"tenant_id": 3},
        "todo",
    )


def test_job_deferred_in_a_rolled_back_transaction_is_gone():
    with pytest.raises(RuntimeError), transaction.atomic():
        defer()
        raise RuntimeError("caller fails after enqueueing")
    assert not ProcrastinateJob.objects.exists()


def test_queueing_lock_returns_the_waiting_job_and_keeps_the_callers_transaction_usable():
    with transaction.atomic():
        first, created = jobs.job_defer(task_name="tests.noop_compliance", kwargs={}, queueing_lock="refresh:1")
        second, created_again = jobs.job_defer(task_name="tests.noop_compliance", kwargs={}, queueing_lock="refresh:1")
        assert ProcrastinateJob.objects.count() == 1  # the transaction still works after AlreadyEnqueued
    assert (first, created, created_again) == (second, True, False)


def test_queueing_lock_raises_the_waiting_jobs_priority():
    job_id, _ = jobs.job_defer(task_name="tests.noop_compliance", kwargs={}, queueing_lock="refresh:1")
    jobs.job_defer(task_name="tests.noop_compliance", kwargs={}, queueing_lock="refresh:1", priority=1)
    assert ProcrastinateJob.objects.get(id=job_id).priority == jobs.priority_to_stored(1)


def test_unknown_task_is_refused():
    with pytest.raises(jobs.UnknownTask, match="no task named 'tests.nope'"):
        jobs.job_defer(task_name="tests.nope", kwargs={})


def test_stats_match_hand_counted_states(sql):
    ids = [defer() for _ in range(12)]
    set_status(sql, ids[0], "doing")
    set_status(sql, ids[1], "doing")
    for job_id in ids[2:5]:
        set_status(sql, job_id, "succeeded")
    set_status(sql, ids[5], "failed")
    set_status(sql, ids[6], "cancelled")
    set_status(sql, ids[7], "aborted")
    sql("UPDATE procrastinate_jobs SET scheduled_at = now() + interval '1 hour' WHERE id = %s", [ids[8]])
    sql("UPDATE procrastinate_jobs SET scheduled_at = now() - interval '1 hour' WHERE id = %s", [ids[9]])
    # ids[9..11] are due now: waiting
    stats = jobs.get_queue_stats("filing-reminder")
    assert stats.as_dict() == {
        "waiting": 3,
        "active": 2,
        "delayed": 1,
        "completed": 3,
        "failed": 1,
        "paused": 0,
        "cancelled": 2,
    }


def test_stats_of_a_paused_queue_count_waiting_jobs_as_paused():
    for _ in range(4):
        defer()
    jobs.pause_queue("filing-reminder")
    stats = jobs.get_queue_stats("filing-reminder")
    assert (stats.waiting, stats.paused, stats.is_paused) == (0, 4, True)


def test_stats_survive_compaction(sql):
    for _ in range(5):
        defer()
    before = jobs.get_queue_stats("filing-reminder")
    jobs.job_counts_compact()
    assert jobs.get_queue_stats("filing-reminder") == before
    assert sql("SELECT count(*) FROM kgc_jobcountdelta WHERE queue_name = 'filing-reminder'") == [(1,)]


def test_all_queue_stats_are_keyed_by_the_four_queue_names():
    assert list(jobs.get_all_queue_stats()) == ["compliance", "expiry-notification", "filing-reminder", "email"]


@pytest.mark.parametrize(
    "call", [jobs.get_queue_stats, jobs.pause_queue, jobs.resume_queue, jobs.is_paused, jobs.cleanup_queue]
)
def test_unknown_queue_is_refused_by_name(call):
    with pytest.raises(UnknownQueue, match="unknown queue 'emails'"):
        call("emails")


def test_pause_and_resume_are_persisted():
    assert jobs.pause_queue("email", by="ops") is True
    assert jobs.pause_queue("email") is False
    assert jobs.is_paused("email")
    assert jobs.resume_queue("email") is True
    assert not jobs.is_paused("email")
    assert jobs.resume_queue("email") is False


def finish(sql, job_id, status, *, ago):
    """Make a job look finished ``ago``: every event of its life moved back in time."""
    set_status(sql, job_id, status)
    sql("INSERT INTO procrastinate_events (job_id, type) VALUES (%s, %s)", [job_id, status])
    sql("UPDATE procrastinate_events SET at = now() - %s WHERE job_id = %s", [ago, job_id])


def test_cleanup_deletes_finished_jobs_older_than_the_ages_with_their_events_and_failures(sql):
    old_done, new_done, old_failed, new_failed, waiting = (defer() for _ in range(5))
    other_queue_old = defer("tests.noop_compliance")
    finish(sql, old_done, "succeeded", ago=timedelta(days=8))
    finish(sql, new_done, "succeeded", ago=timedelta(days=6))
    finish(sql, old_failed, "failed", ago=timedelta(days=31))
    finish(sql, new_failed, "failed", ago=timedelta(days=29))
    finish(sql, other_queue_old, "succeeded", ago=timedelta(days=60))
    JobFailure.objects.create(
        job_id=old_failed,
        queue_name="filing-reminder",
        task_name="t",
        attempt=1,
        exception_type="E",
        failed_at=timezone.now(),
    )

    result = jobs.cleanup_queue(
        "filing-reminder", completed_age=timedelta(days=7), failed_age=timedelta(days=30), batch_size=1
    )

    assert (result.completed, result.failed) == (1, 1)
    remaining = set(ProcrastinateJob.objects.values_list("id", flat=True))
    assert remaining == {new_done, new_failed, waiting, other_queue_old}
    assert not JobFailure.objects.exists()
    assert sql("SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%s)", [[old_done, old_failed]]) == [(0,)]
    assert jobs.get_queue_stats("filing-reminder").completed == 1


def test_cleanup_counts_age_from_the_last_finish(sql):
    job_id = defer()
    finish(sql, job_id, "failed", ago=timedelta(days=40))
    sql(
        "INSERT INTO procrastinate_events (job_id, type, at) VALUES (%s, 'retried', now() - interval '1 day')", [job_id]
    )
    assert jobs.cleanup_queue("filing-reminder", failed_age=timedelta(days=30)).failed == 0


def test_cleanup_refuses_a_negative_age():
    with pytest.raises(jobs.JobError, match="completed_age must not be negative"):
        jobs.cleanup_queue("filing-reminder", completed_age=timedelta(days=-1))


def test_retry_job_puts_a_failed_job_back_with_fresh_attempts(sql):
    job_id = defer()
    set_status(sql, job_id, "failed", attempts=4)
    jobs.retry_job(job_id)
    job = ProcrastinateJob.objects.get(id=job_id)
    assert (job.status, job.attempts) == ("todo", 0)


@pytest.mark.parametrize(
    ("status", "reason"),
    [("doing", "is running"), ("todo", "is already waiting"), ("succeeded", "has status succeeded")],
)
def test_retry_job_refuses_a_job_that_has_not_failed(sql, status, reason):
    job_id = defer()
    set_status(sql, job_id, status)
    with pytest.raises(jobs.JobNotRetryable, match=reason):
        jobs.retry_job(job_id)
    assert ProcrastinateJob.objects.get(id=job_id).status == status


def test_retry_job_of_an_unknown_id_is_refused():
    with pytest.raises(jobs.JobNotFound, match="no job with id 999999"):
        jobs.retry_job(999999)


def test_retry_failed_puts_back_only_failed_jobs_of_that_queue(sql):
    failed_mine, failed_other, running = defer(), defer("tests.noop_compliance"), defer()
    set_status(sql, failed_mine, "failed")
    set_status(sql, failed_other, "failed")
    set_status(sql, running, "doing")
    assert jobs.retry_failed("filing-reminder") == 1
    statuses = dict(ProcrastinateJob.objects.values_list("id", "status"))
    assert statuses == {failed_mine: "todo", failed_other: "failed", running: "doing"}


def test_get_failed_lists_failed_jobs_with_every_attempt_newest_first(sql):
    job_id = defer()
    set_status(sql, job_id, "failed", attempts=1)
    now = timezone.now()
    for attempt in (1, 2):
        JobFailure.objects.create(
            job_id=job_id,
            queue_name="filing-reminder",
            task_name="tests.noop_filing_reminder",
            attempt=attempt,
            exception_type="ConnectionError",
            message=f"try {attempt}",
            traceback="Traceback ...",
            failed_at=now + timedelta(seconds=attempt),
        )
    [failed] = jobs.get_failed("filing-reminder")
    assert failed.id == job_id
    assert [f.message for f in failed.failures] == ["try 2", "try 1"]
    assert jobs.get_failed("compliance") == []
