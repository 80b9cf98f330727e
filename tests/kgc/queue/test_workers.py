"""The queue layer with real worker processes: limits, pause, crash recovery, shutdown, cron, order."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queue import jobs
from kgc.queue.models import JobFailure
from tests.helpers import FAST_FAULTS, wait_for

pytestmark = pytest.mark.slow


def defer(task: str, priority: int | None = None, **kwargs: object) -> int:
    return jobs.job_defer(task_name=task, kwargs=kwargs, priority=priority)[0]


def statuses(ids: list[int]) -> list[str]:
    found = dict(ProcrastinateJob.objects.filter(id__in=ids).values_list("id", "status"))
    return [found[i] for i in ids]


def all_succeeded(ids: list[int]) -> bool:
    return statuses(ids) == ["succeeded"] * len(ids)


def start_times(sql, ids: list[int]) -> list[tuple[int, datetime]]:
    return sql(
        "SELECT job_id, at FROM procrastinate_events WHERE type = 'started' AND job_id = ANY(%s) ORDER BY at, id", [ids]
    )


def test_rate_limit_holds_across_three_worker_processes(workers, sql):
    group = workers(KGC_RATE_LIMITS="compliance=3/4s")
    ids = [defer("tests.noop_compliance") for _ in range(9)]
    group.start("--queues", "compliance")
    group.start("--queues", "compliance")
    group.start("-q", "compliance", entry="procrastinate")  # the other entry point obeys the same limit
    wait_for(lambda: all_succeeded(ids), timeout=60, message="nine rate-limited jobs")
    starts = [at for _, at in start_times(sql, ids)]
    for first in starts:
        in_window = [at for at in starts if first <= at <= first + timedelta(seconds=4)]
        assert len(in_window) <= 3, f"{len(in_window)} starts within 4 s of {first}"
    assert not JobFailure.objects.exists()  # held back, not failed
    # one attempt each: waiting for the limit used up no retry
    assert set(ProcrastinateJob.objects.filter(id__in=ids).values_list("attempts", flat=True)) == {1}


def test_pause_is_seen_by_other_processes_and_resume_restarts_pickup(workers, sql):
    group = workers()
    group.start("-q", "filing-reminder", entry="procrastinate")
    jobs.pause_queue("filing-reminder")
    ids = [defer("tests.noop_filing_reminder") for _ in range(3)]
    time.sleep(3)  # several fetch rounds of the worker
    assert statuses(ids) == ["todo"] * 3
    assert jobs.get_queue_stats("filing-reminder").paused == 3
    jobs.resume_queue("filing-reminder")
    wait_for(lambda: all_succeeded(ids), timeout=30, message="jobs after resume")


def test_running_job_finishes_when_its_queue_is_paused(workers):
    group = workers()
    group.start("--queues", "filing-reminder")
    running = defer("tests.sleep_filing_reminder", seconds=2)
    wait_for(lambda: statuses([running]) == ["doing"], message="job start")
    jobs.pause_queue("filing-reminder")
    waiting = defer("tests.noop_filing_reminder")
    wait_for(lambda: statuses([running]) == ["succeeded"], message="running job to finish")
    time.sleep(2)
    assert statuses([waiting]) == ["todo"]


def test_restarted_worker_still_sees_the_pause(workers):
    jobs.pause_queue("filing-reminder")
    group = workers()
    job = defer("tests.noop_filing_reminder")
    first = group.start("--queues", "filing-reminder")
    time.sleep(2)  # several fetch rounds
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    group.start("--queues", "filing-reminder")
    time.sleep(2)
    assert statuses([job]) == ["todo"]


def test_job_of_a_killed_worker_runs_again_on_a_live_worker(workers):
    group = workers(**FAST_FAULTS)
    doomed = group.start("--queues", "compliance")
    job = defer("tests.sleep_compliance", seconds=120, first_attempt_only=True)
    wait_for(lambda: statuses([job]) == ["doing"], message="job start")
    group.start("--queues", "compliance")
    os.kill(doomed.pid, signal.SIGKILL)
    wait_for(lambda: statuses([job]) == ["succeeded"], timeout=90, message="rescued job to succeed")
    assert ProcrastinateJob.objects.get(id=job).attempts == 2  # the lost run and the successful one
    failure = JobFailure.objects.get(job_id=job)
    assert (failure.exception_type, failure.attempt, failure.will_retry) == ("WorkerLost", 1, True)


def test_sigterm_lets_the_running_job_finish_and_exits_zero(workers, sql):
    registered_before = sql("SELECT count(*) FROM procrastinate_workers")
    group = workers()
    process = group.start("--queues", "filing-reminder")
    job = defer("tests.sleep_filing_reminder", seconds=3)
    wait_for(lambda: statuses([job]) == ["doing"], message="job start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert statuses([job]) == ["succeeded"]
    assert sql("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'") == [(0,)]
    assert sql("SELECT count(*) FROM procrastinate_workers") == registered_before  # it unregistered


def test_job_still_running_at_the_shutdown_timeout_goes_back_to_its_queue(workers):
    group = workers()
    process = group.start("--queues", "filing-reminder", "--shutdown-timeout", "1")
    job = defer("tests.sleep_filing_reminder", seconds=120)
    wait_for(lambda: statuses([job]) == ["doing"], message="job start")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert statuses([job]) == ["todo"]
    assert JobFailure.objects.get(job_id=job).exception_type == "TimeoutError"


def test_one_job_per_cron_tick_with_three_workers(workers, sql):
    group = workers(KGC_TEST_CRON="* * * * * */2")  # every 2 seconds
    for _ in range(3):
        group.start("--queues", "maintenance")
    wait_for(
        lambda: ProcrastinateJob.objects.filter(task_name="tests.tick", status="succeeded").count() >= 3,
        timeout=60,
        message="three ticks",
    )
    per_tick = sql(
        "SELECT args->>'timestamp', count(*) FROM procrastinate_jobs WHERE task_name = 'tests.tick' GROUP BY 1"
    )
    assert len(per_tick) >= 3
    assert {count for _, count in per_tick} == {1}


def test_tick_missed_while_no_worker_was_up_runs_when_a_worker_starts(workers):
    missed = (datetime.now(tz=UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
    group = workers(KGC_TEST_CRON=f"{missed.minute} {missed.hour} * * *")
    group.start("--queues", "maintenance")
    wait_for(
        lambda: ProcrastinateJob.objects.filter(task_name="tests.tick", status="succeeded").exists(),
        timeout=60,
        message="the missed tick's job",
    )
    assert [job.args for job in ProcrastinateJob.objects.filter(task_name="tests.tick")] == [
        {"timestamp": int(missed.timestamp())}
    ]


def test_with_catching_up_off_every_tick_still_runs(workers):
    group = workers(KGC_TEST_CRON="* * * * * */2", KGC_SCHEDULER_CATCH_UP_HOURS="0")
    group.start("--queues", "maintenance")
    wait_for(
        lambda: ProcrastinateJob.objects.filter(task_name="tests.tick", status="succeeded").count() >= 2,
        timeout=60,
        message="two ticks",
    )


def test_a_tick_too_late_to_catch_up_is_reported_by_the_health_checks(workers, sql):
    from kgc.console.views import readiness_checks

    missed = (datetime.now(tz=UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
    yesterday = int((missed - timedelta(days=1)).timestamp())
    sql(
        "INSERT INTO procrastinate_periodic_defers (task_name, periodic_id, defer_timestamp) VALUES (%s, %s, %s)",
        ["tests.tick", "test", yesterday],
    )
    group = workers(KGC_TEST_CRON=f"{missed.minute} {missed.hour} * * *", KGC_SCHEDULER_CATCH_UP_HOURS="0")
    group.start("--queues", "maintenance")
    verdict = wait_for(
        lambda: "skipped" in readiness_checks()["scheduler"] and readiness_checks()["scheduler"],
        timeout=60,
        message="the scheduler's verdict",
    )
    assert verdict == (
        "the scheduler skipped a tick too late to catch up (KGC_SCHEDULER_CATCH_UP_HOURS): "
        f"tests.tick (test) at {missed:%Y-%m-%d %H:%M} UTC"
    )
    assert not ProcrastinateJob.objects.filter(task_name="tests.tick").exists()


def test_priority_1_starts_before_waiting_default_priority_jobs(workers, sql):
    group = workers()
    backlog = [defer("tests.noop_maintenance") for _ in range(5)]
    urgent = defer("tests.noop_maintenance", priority=1)
    group.start("--queues", "maintenance")  # concurrency 1: one at a time, in priority order
    wait_for(lambda: all_succeeded([*backlog, urgent]), timeout=60, message="all jobs")
    order = [job_id for job_id, _ in start_times(sql, [*backlog, urgent])]
    assert order == [urgent, *backlog]


def test_worker_records_a_permanent_failure_without_retry(workers):
    group = workers()
    job = defer("tests.fail_permanently", reason="tenant 42 does not exist")
    group.start("--queues", "maintenance")
    wait_for(lambda: statuses([job]) == ["failed"], message="failure")
    failure = JobFailure.objects.get(job_id=job)
    assert (failure.exception_type, failure.message, failure.attempt, failure.will_retry) == (
        "ValueError",
        "tenant 42 does not exist",
        1,
        False,
    )
    assert "raise ValueError(reason)" in failure.traceback
    assert [f.id for f in jobs.get_failed("maintenance")] == [job]


def test_worker_retries_a_transient_failure_later_with_a_record(workers):
    group = workers()
    job = defer("tests.fail_transiently")
    group.start("--queues", "maintenance")
    wait_for(lambda: JobFailure.objects.filter(job_id=job).exists(), message="failure record")
    wait_for(lambda: statuses([job]) == ["todo"], message="retry scheduling")
    stored = ProcrastinateJob.objects.get(id=job)
    assert stored.attempts == 1
    assert stored.scheduled_at > datetime.now(tz=UTC)  # backoff: delayed, not immediately re-run
    failure = JobFailure.objects.get(job_id=job)
    assert (failure.exception_type, failure.will_retry) == ("ConnectionError", True)
    assert jobs.get_queue_stats("maintenance").delayed == 1


def test_job_deferred_by_a_task_commits_or_rolls_back_with_the_tasks_transaction(workers):
    group = workers()
    job = defer("tests.defer_then_fail")
    group.start("--queues", "maintenance")
    wait_for(lambda: statuses([job]) == ["failed"], message="the task to fail")
    assert not ProcrastinateJob.objects.filter(task_name="tests.noop_filing_reminder").exists()


def test_procrastinate_entry_point_defers_inside_the_tasks_transaction_too(workers):
    group = workers()
    job = defer("tests.defer_then_fail")
    group.start("-q", "maintenance", entry="procrastinate")
    wait_for(lambda: statuses([job]) == ["failed"], message="the task to fail")
    assert not ProcrastinateJob.objects.filter(task_name="tests.noop_filing_reminder").exists()


def test_job_draining_longer_than_the_dead_worker_cutoff_is_not_run_twice(workers):
    """A stopping worker keeps its heartbeat while its jobs finish, so nobody rescues them."""
    group = workers(**FAST_FAULTS)
    stopping = group.start("--queues", "compliance", "--shutdown-timeout", "90")
    job = defer("tests.sleep_compliance", seconds=8)  # longer than the 3 s cutoff
    wait_for(lambda: statuses([job]) == ["doing"], message="job start")
    group.start("--queues", "compliance")  # a live worker that would rescue a silent one's jobs
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=120) == 0
    stored = ProcrastinateJob.objects.get(id=job)
    assert (stored.status, stored.attempts) == ("succeeded", 1)
    assert not JobFailure.objects.filter(job_id=job).exists()


# The put-back at the shutdown timeout fails as if the connection was cut (a failover): the
# statement's own server process ends itself.
CUT_THE_PUT_BACK = """
CREATE FUNCTION test_cut_the_put_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'todo' AND NEW.id = {job_id} THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_cut_the_put_back BEFORE UPDATE ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION test_cut_the_put_back();
"""
UNCUT_THE_PUT_BACK = "DROP TRIGGER test_cut_the_put_back ON procrastinate_jobs; DROP FUNCTION test_cut_the_put_back()"


def test_a_job_the_shutdown_cannot_put_back_gets_no_outcome_and_is_rescued(workers, sql):
    """Not ``aborted``: nobody asked. The rescue puts it back once the worker is gone."""
    group = workers(**FAST_FAULTS)
    stopping = group.start("--queues", "maintenance", "--shutdown-timeout", "1")
    job = defer("tests.wait_async", seconds=120, first_attempt_only=True)
    wait_for(lambda: statuses([job]) == ["doing"], message="job start")
    sql(CUT_THE_PUT_BACK.format(job_id=job))
    try:
        stopping.send_signal(signal.SIGTERM)
        assert stopping.wait(timeout=60) == 0
    finally:
        sql(UNCUT_THE_PUT_BACK)
    assert sql("SELECT status::text, attempts FROM procrastinate_jobs WHERE id = %s", [job]) == [("doing", 0)]
    assert not JobFailure.objects.filter(job_id=job).exists()
    log = group.output(stopping)
    assert "the rescue will, once this worker has stopped" in log
    assert "1 job(s) left for the rescue" in log and "put back;" not in log and "1 job(s) put back" not in log
    group.start("--queues", "maintenance")
    wait_for(lambda: statuses([job]) == ["succeeded"], timeout=60, message="the rescued job")
    assert JobFailure.objects.get(job_id=job).exception_type == "WorkerLost"


def test_an_async_job_put_back_at_the_shutdown_timeout_leaves_no_refused_outcome(workers):
    group = workers()
    process = group.start("--queues", "maintenance", "--shutdown-timeout", "1")
    job = defer("tests.wait_async", seconds=120)
    wait_for(lambda: statuses([job]) == ["doing"], message="job start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert statuses([job]) == ["todo"]
    log = group.output(process)
    assert "1 job(s) put back" in log
    assert "job_outcome_refused" not in log and "job aborted" not in log


def test_a_job_of_a_task_the_worker_does_not_know_waits_for_a_worker_that_knows_it(workers):
    """A rolling deploy: an older worker, which does not declare the task, claims the job first."""
    group = workers(KGC_UNKNOWN_TASK_GRACE="60")
    group.env.pop("KGC_EXTRA_TASK_MODULES")  # this worker knows none of the tests' tasks
    job = defer("tests.noop_email")
    older = group.start("--queues", "email")
    wait_for(lambda: JobFailure.objects.filter(job_id=job).exists(), message="the unknown task's record")
    stored = ProcrastinateJob.objects.get(id=job)
    assert (stored.status, stored.attempts) == ("todo", 0)  # back in its queue, no attempt used
    assert stored.scheduled_at > datetime.now(tz=UTC)  # not claimed again at once
    failure = JobFailure.objects.get(job_id=job)
    assert (failure.exception_type, failure.will_retry) == ("TaskNotFound", True)
    assert "no task named 'tests.noop_email' in this worker" in failure.message
    older.send_signal(signal.SIGTERM)
    assert older.wait(timeout=60) == 0
    group.env["KGC_EXTRA_TASK_MODULES"] = "tests.kgc.sample_tasks"
    group.start("--queues", "email")  # a worker of the new release
    wait_for(lambda: statuses([job]) == ["succeeded"], timeout=60, message="the job on a worker that knows it")
    assert ProcrastinateJob.objects.get(id=job).attempts == 1


def test_a_job_no_worker_knows_fails_after_the_grace_saying_why(workers):
    group = workers(KGC_UNKNOWN_TASK_GRACE="2")
    group.env.pop("KGC_EXTRA_TASK_MODULES")
    job = defer("tests.noop_email")
    group.start("--queues", "email")
    wait_for(lambda: statuses([job]) == ["failed"], timeout=60, message="the job to fail after the grace")
    records = list(JobFailure.objects.filter(job_id=job).order_by("failed_at"))
    assert [(record.exception_type, record.will_retry) for record in records] == [
        ("TaskNotFound", True),  # first found unknown: put back
        ("TaskNotFound", False),  # nobody knew it within the grace
    ]
    assert "within 2 s (KGC_UNKNOWN_TASK_GRACE)" in records[-1].message
    assert ProcrastinateJob.objects.get(id=job).attempts == 1


def test_health_worker_checks_the_worker_processes_running_here(workers):
    """The worker container's health check: it passes while this host's worker beats, and fails once it stopped."""
    from tests.helpers import manage

    group = workers()
    process = group.start("--queues", "email")
    wait_for(lambda: manage("health", "--worker").returncode == 0, timeout=60, message="a healthy worker")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    result = manage("health", "--worker")
    assert result.returncode == 1
    assert "no worker process of this host" in result.stdout


# The database refuses one job's failure record (as a constraint or a trigger of its own might).
REFUSE_POISON = """
CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message = 'poison' THEN
        RAISE EXCEPTION 'this record is refused';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_refuse_poison BEFORE INSERT ON kgc_jobfailure FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();
"""


def test_an_outcome_the_database_refuses_does_not_stall_the_workers_other_outcomes(workers, sql):
    """Before, the worker tried the same batch again until its recovery timeout, then exited,
    and every job it had finished meanwhile ran again."""
    sql(REFUSE_POISON)
    try:
        group = workers()
        process = group.start("--queues", "maintenance")
        poisoned = defer("tests.fail_permanently", reason="poison")
        wait_for(lambda: statuses([poisoned]) != ["todo"], message="the poisoned job to start")
        later = [defer("tests.noop_maintenance") for _ in range(3)]
        wait_for(lambda: all_succeeded(later), timeout=60, message="the jobs after the refused outcome")
        assert statuses([poisoned]) == ["failed"]
        assert JobFailure.objects.get(job_id=poisoned).message.startswith("(the failure's text could not be stored")
        assert process.poll() is None
    finally:
        sql("DROP TRIGGER test_refuse_poison ON kgc_jobfailure; DROP FUNCTION test_refuse_poison()")
