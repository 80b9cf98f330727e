"""Outcomes written in batches (``sql.FINISH``): fencing of superseded attempts, queueing locks on retry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kgc.queue import sql as queue_sql
from kgc.queue.completer import Completer, finish_params
from kgc.queue.db import Link, connection_params
from kgc.queue.runner import Claim, Failure, Outcome

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def claimed(sql, job_id: int, worker_id: int) -> Claim:
    """Claim a job for a worker (as the claim does) and return what the worker holds."""
    from procrastinate.jobs import Job

    [(attempts, queue, task, lock)] = sql(
        """UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s
           RETURNING attempts, queue_name, task_name, queueing_lock""",
        [worker_id, job_id],
    )
    return Claim(
        job=Job(id=job_id, queue=queue, task_name=task, lock=None, queueing_lock=lock, attempts=attempts),
        worker_id=worker_id,
    )


def outcome(claim: Claim, status: str = "succeeded", *, retry_in: timedelta | None = None) -> Outcome:
    failure = None
    if status != "succeeded":
        failure = Failure(claim.attempts + 1, "ConnectionError", "dropped", "Traceback...", NOW)
    return Outcome(claim=claim, status=status, retry_at=NOW + retry_in if retry_in else None, failure=failure)


def finish(link, outcomes: list[Outcome], *, keep_locks: bool = True) -> set[int]:
    return {row["id"] for row in link(queue_sql.FINISH, finish_params(outcomes, keep_locks=keep_locks))}


def row(sql, job_id: int) -> tuple:
    [found] = sql(
        "SELECT status::text, attempts, worker_id, queueing_lock FROM procrastinate_jobs WHERE id = %s", [job_id]
    )
    return found


def test_outcomes_of_many_jobs_are_written_in_one_statement(sql, link, worker_row, job_row):
    worker = worker_row()
    done, failed, retried = (claimed(sql, job_row(), worker) for _ in range(3))
    accepted = finish(link, [outcome(done), outcome(failed, "failed"), outcome(retried, "todo", retry_in=timedelta(1))])
    assert accepted == {done.job.id, failed.job.id, retried.job.id}
    assert row(sql, done.job.id) == ("succeeded", 1, None, None)
    assert row(sql, failed.job.id) == ("failed", 1, None, None)
    assert row(sql, retried.job.id) == ("todo", 1, None, None)
    assert sql("SELECT job_id, attempt, will_retry FROM kgc_jobfailure ORDER BY job_id") == [
        (failed.job.id, 1, False),
        (retried.job.id, 1, True),
    ]


def test_the_late_outcome_of_a_rescued_attempt_is_refused(sql, link, worker_row, job_row):
    """Worker A's job is rescued and claimed again by B; A's outcome arrives after that."""
    dead, alive = worker_row(), worker_row()
    old = claimed(sql, job_row(), dead)
    sql(
        "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL, attempts = attempts + 1 WHERE id = %s",
        [old.job.id],
    )
    new = claimed(sql, old.job.id, alive)
    assert finish(link, [outcome(old, "failed")]) == set()
    assert row(sql, old.job.id) == ("doing", 1, alive, None)
    assert sql("SELECT count(*) FROM kgc_jobfailure") == [(0,)]  # no record for the refused outcome
    assert finish(link, [outcome(new)]) == {new.job.id}
    assert row(sql, new.job.id) == ("succeeded", 2, None, None)


def test_a_refused_outcome_even_from_the_same_worker_after_it_was_rescued(sql, link, worker_row, job_row):
    """The attempt count is the fencing token: the same worker, claiming the job again, has a new one."""
    worker = worker_row()
    first = claimed(sql, job_row(), worker)
    sql(
        "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL, attempts = attempts + 1 WHERE id = %s",
        [first.job.id],
    )
    second = claimed(sql, first.job.id, worker)
    assert finish(link, [outcome(first), outcome(second, "failed")]) == {second.job.id}
    assert row(sql, first.job.id)[0] == "failed"


def test_an_outcome_is_accepted_when_the_worker_was_removed_but_nobody_rescued_the_job(sql, link, worker_row, job_row):
    worker = worker_row()
    held = claimed(sql, job_row(), worker)
    sql("DELETE FROM procrastinate_workers WHERE id = %s", [worker])  # the foreign key sets worker_id to NULL
    assert finish(link, [outcome(held)]) == {held.job.id}
    assert row(sql, held.job.id)[0] == "succeeded"


def test_a_retry_keeps_its_queueing_lock_when_no_other_job_waits_under_it(sql, link, worker_row, job_row):
    worker = worker_row()
    held = claimed(sql, job_row(queueing_lock="refresh:7"), worker)
    finish(link, [outcome(held, "todo", retry_in=timedelta(seconds=30))])
    assert row(sql, held.job.id) == ("todo", 1, None, "refresh:7")


def test_a_retry_goes_back_without_its_queueing_lock_when_another_job_waits_under_it(sql, link, worker_row, job_row):
    """procrastinate's own retry collided here and left the job running for ever."""
    worker = worker_row()
    held = claimed(sql, job_row(queueing_lock="refresh:7"), worker)
    waiting = job_row(queueing_lock="refresh:7")
    assert finish(link, [outcome(held, "todo", retry_in=timedelta(seconds=30))]) == {held.job.id}
    assert row(sql, held.job.id) == ("todo", 1, None, None)
    assert row(sql, waiting)[3] == "refresh:7"


def test_two_retries_under_one_queueing_lock_in_one_batch_keep_it_once(sql, link, worker_row, job_row):
    worker = worker_row()
    first = claimed(sql, job_row(queueing_lock="refresh:7"), worker)
    second = claimed(sql, job_row(queueing_lock="refresh:7"), worker)  # enqueued while the first ran
    retry = timedelta(seconds=30)
    assert finish(link, [outcome(first, "todo", retry_in=retry), outcome(second, "todo", retry_in=retry)]) == {
        first.job.id,
        second.job.id,
    }
    assert [row(sql, first.job.id)[3], row(sql, second.job.id)[3]] == ["refresh:7", None]


def test_without_keeping_locks_every_retry_goes_back_without_its_lock(sql, link, worker_row, job_row):
    worker = worker_row()
    held = claimed(sql, job_row(queueing_lock="refresh:7"), worker)
    finish(link, [outcome(held, "todo", retry_in=timedelta(seconds=30))], keep_locks=False)
    assert row(sql, held.job.id)[3] is None


def test_a_retry_of_a_job_whose_abort_was_requested_fails_instead(sql, link, worker_row, job_row):
    worker = worker_row()
    held = claimed(sql, job_row(), worker)
    sql("UPDATE procrastinate_jobs SET abort_requested = true WHERE id = %s", [held.job.id])
    finish(link, [outcome(held, "todo", retry_in=timedelta(seconds=30))])
    assert row(sql, held.job.id)[0] == "failed"


def test_an_old_attempts_failure_is_not_recorded_with_the_new_attempts_outcome(sql, link, worker_row, job_row):
    """Both outcomes in one batch: only the attempt that holds the job writes, and only its record."""
    worker = worker_row()
    old = claimed(sql, job_row(), worker)
    sql(
        "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL, attempts = attempts + 1 WHERE id = %s",
        [old.job.id],
    )
    new = claimed(sql, old.job.id, worker)
    assert finish(link, [outcome(old, "failed"), outcome(new, "failed")]) == {new.job.id}
    assert sql("SELECT attempt FROM kgc_jobfailure WHERE job_id = %s", [new.job.id]) == [(2,)]


def test_a_return_value_is_recorded_with_its_outcome(sql, link, worker_row, job_row):
    worker = worker_row()
    held = claimed(sql, job_row(), worker)
    done = outcome(held)
    done.result = {"clients_scored": 3}
    finish(link, [done])
    assert sql("SELECT value::text FROM kgc_jobresult WHERE job_id = %s", [held.job.id]) == [('{"clients_scored": 3}',)]


def test_an_outcome_the_database_refuses_is_written_simplified_and_the_others_as_they_are(
    sql, link, worker_row, job_row
):
    """A NUL in an exception message (which PostgreSQL cannot store) must not hold up the batch."""
    import asyncio

    from kgc.queue.completer import Completer
    from kgc.queue.db import Link, connection_params

    worker = worker_row()
    good, bad = claimed(sql, job_row(), worker), claimed(sql, job_row(), worker)
    poisoned = outcome(bad, "failed")
    poisoned.failure = Failure(1, "ValueError", "a \x00 in the message", "Traceback...", NOW)  # not sanitised
    connection = Link("test", connection_params())
    completer = Completer(connection, timeout=30, on_written=lambda outcomes: None)
    completer.add(outcome(good))
    completer.add(poisoned)

    async def flush() -> None:
        try:
            await completer.flush_all(timeout=30)
        finally:
            await connection.drop()

    asyncio.run(flush())
    assert row(sql, good.job.id)[0] == "succeeded"
    assert row(sql, bad.job.id)[0] == "failed"
    [(message,)] = sql("SELECT message FROM kgc_jobfailure WHERE job_id = %s", [bad.job.id])
    assert message.startswith("(the failure's text could not be stored")


def test_an_old_and_a_new_attempts_retries_of_one_locked_job_in_one_batch(sql, link, worker_row, job_row):
    """The old attempt's outcome waited (the database was out of reach) while the job was rescued
    and claimed again: only the new attempt's retry is written, and the batch goes through."""
    worker = worker_row()
    old = claimed(sql, job_row(queueing_lock="refresh:7"), worker)
    sql(
        "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL, attempts = attempts + 1 WHERE id = %s",
        [old.job.id],
    )
    new = claimed(sql, old.job.id, worker)
    retry = timedelta(seconds=30)
    assert finish(link, [outcome(old, "todo", retry_in=retry), outcome(new, "todo", retry_in=retry)]) == {new.job.id}
    assert row(sql, new.job.id) == ("todo", 2, None, "refresh:7")


# A value the database refuses for one outcome only (a check of its own, as a constraint would).
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
# Any write of one job's outcome is refused.
REFUSE_JOB = """
CREATE FUNCTION test_refuse_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'doing' AND NEW.id = {job_id} THEN
        RAISE EXCEPTION 'this outcome is refused';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_refuse_job BEFORE UPDATE ON procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION test_refuse_job();
"""


@pytest.fixture
def refuse(sql):
    """``refuse(statement)``: install one of the triggers above for this test only."""
    installed: list[str] = []

    def install(statement: str, name: str) -> None:
        sql(statement)
        installed.append(name)

    yield install
    for name in installed:
        table = "kgc_jobfailure" if name == "test_refuse_poison" else "procrastinate_jobs"
        sql(f"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}()")


def flush(outcomes: list[Outcome]) -> Completer:
    connection = Link("test", connection_params())
    completer = Completer(connection, timeout=30, on_written=lambda outcomes: None)
    for one in outcomes:
        completer.add(one)

    async def run() -> None:
        try:
            await completer.flush_all(timeout=30)
        finally:
            await connection.drop()

    asyncio.run(run())
    return completer


def test_an_outcome_refused_by_any_sql_error_does_not_hold_up_the_others(sql, worker_row, job_row, refuse):
    worker = worker_row()
    refuse(REFUSE_POISON, "test_refuse_poison")
    claims = [claimed(sql, job_row(), worker) for _ in range(5)]
    outcomes = [outcome(claim) for claim in claims]
    outcomes[3] = outcome(claims[3], "failed")
    outcomes[3].failure = Failure(1, "ValueError", "poison", "Traceback...", NOW)
    completer = flush(outcomes)
    assert not completer.pending
    assert [row(sql, claim.job.id)[0] for claim in claims] == ["succeeded"] * 3 + ["failed", "succeeded"]
    [(message,)] = sql("SELECT message FROM kgc_jobfailure WHERE job_id = %s", [claims[3].job.id])
    assert message.startswith("(the failure's text could not be stored")


def test_an_outcome_refused_even_simplified_is_left_for_the_reconciliation(sql, worker_row, job_row, refuse, caplog):
    worker = worker_row()
    claims = [claimed(sql, job_row(), worker) for _ in range(3)]
    refuse(REFUSE_JOB.format(job_id=claims[1].job.id), "test_refuse_job")
    completer = flush([outcome(claim) for claim in claims])
    assert not completer.pending
    assert [row(sql, claim.job.id)[0] for claim in claims] == ["succeeded", "doing", "succeeded"]
    assert "job_outcome_unwritable" in {getattr(record, "event", "") for record in caplog.records}
    assert "job_outcome_refused" not in {getattr(record, "event", "") for record in caplog.records}


def test_a_finished_job_keeps_the_worker_that_ran_it(sql, link, worker_row, job_row):
    worker = worker_row()
    done, failed = claimed(sql, job_row(), worker), claimed(sql, job_row(), worker)
    finish(link, [outcome(done), outcome(failed, "failed")])
    kept = sql("SELECT id, worker_id, kgc_worker_id FROM procrastinate_jobs ORDER BY id")
    # procrastinate's worker_id is cleared (its foreign key), ours is kept.
    assert kept == [(done.job.id, None, worker), (failed.job.id, None, worker)]
    sql("DELETE FROM procrastinate_workers WHERE id = %s", [worker])
    assert sql("SELECT count(*) FROM procrastinate_jobs WHERE kgc_worker_id = %s", [worker]) == [(2,)]
