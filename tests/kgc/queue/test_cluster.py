"""Worker processes together: leader election, several processes per runworkers, crashes mid-batch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queue import jobs
from kgc.queue.models import JobFailure, Leadership, WorkerProcess
from tests.helpers import FAST_FAULTS, wait_for

pytestmark = pytest.mark.slow


def ticks_after(sql, timestamp: int) -> list[tuple[str, int, int]]:
    return sql(
        """SELECT args->>'timestamp', count(*), count(*) FILTER (WHERE status = 'succeeded')
             FROM procrastinate_jobs WHERE task_name = 'tests.tick' AND (args->>'timestamp')::bigint > %s
            GROUP BY 1 ORDER BY 1""",
        [timestamp],
    )


def test_cron_ticks_go_on_when_the_lease_holder_is_killed(workers, sql):
    group = workers(KGC_TEST_CRON="* * * * * */2")  # the default lease: 10 s
    for _ in range(3):
        group.start("--queues", "maintenance")
    holder = wait_for(lambda: Leadership.objects.filter(name="cluster").first(), message="a leader")
    doomed = WorkerProcess.objects.get(worker_id=holder.worker_id).pid
    wait_for(lambda: ticks_after(sql, 0), message="a first tick")
    os.kill(doomed, signal.SIGKILL)
    [(killed_at,)] = sql("SELECT extract(epoch FROM now())::bigint")
    final = Leadership.objects.get(name="cluster")  # nobody may take it before it expires

    successor = wait_for(
        lambda: Leadership.objects.exclude(worker_id=holder.worker_id).filter(name="cluster").first(),
        timeout=60,
        message="another worker to take the lease",
    )
    wait_for(lambda: sum(done for _, _, done in ticks_after(sql, killed_at)) >= 3, timeout=60, message="ticks")
    assert {count for _, count, _ in ticks_after(sql, 0)} == {1}  # exactly one job per tick, before and after
    # The successor took over only once the dead holder's lease had run out: never two leaders.
    assert final.worker_id == holder.worker_id
    assert successor.elected_at >= final.expires_at
    print(f"lease taken over {(successor.elected_at.timestamp() - killed_at):.1f} s after the kill")


def test_runworkers_runs_several_processes_and_restarts_one_that_dies(workers, sql):
    group = workers(**FAST_FAULTS)
    parent = group.start("--queues", "filing-reminder", "--processes", "2")
    children = wait_for(
        lambda: (
            [p for p in WorkerProcess.objects.values_list("pid", flat=True)]
            if WorkerProcess.objects.count() == 2
            else None
        ),
        message="two worker processes",
    )
    assert parent.pid not in children
    assert {_parent_of(pid) for pid in children} == {parent.pid}

    os.kill(children[0], signal.SIGKILL)
    wait_for(
        lambda: set(WorkerProcess.objects.values_list("pid", flat=True)) - set(children),
        timeout=60,
        message="a replacement process",
    )
    ids = [jobs.job_defer(task_name="tests.noop_filing_reminder", kwargs={})[0] for _ in range(20)]
    wait_for(lambda: ProcrastinateJob.objects.filter(id__in=ids, status="succeeded").count() == 20, message="jobs")

    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 0
    wait_for(lambda: not WorkerProcess.objects.filter(pid__in=children[1:]).exists(), message="children to unregister")


def test_children_stop_when_their_parent_is_killed(workers):
    group = workers(**FAST_FAULTS)
    parent = group.start("--queues", "filing-reminder", "--processes", "2")
    children = wait_for(
        lambda: (
            list(WorkerProcess.objects.values_list("pid", flat=True)) if WorkerProcess.objects.count() == 2 else None
        ),
        message="two worker processes",
    )
    parent.kill()
    parent.wait(timeout=30)
    # Orphans must not keep serving unsupervised: they drain and exit.
    wait_for(
        lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in children),
        timeout=60,
        message="orphans",
    )


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, parent pid..."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _parent_of(pid: int) -> int:
    return int(_stat(pid)[1])


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def test_every_job_succeeds_after_a_sigkill_with_a_batch_claimed_and_outcomes_not_yet_written(workers):
    group = workers(KGC_CONCURRENCY="filing-reminder=50", **FAST_FAULTS)
    ids = [row[0] for row in _defer_many("tests.sleep_filing_reminder", 2000, seconds=0.005)]
    doomed = group.start("--queues", "filing-reminder")
    wait_for(lambda: ProcrastinateJob.objects.filter(id__in=ids, status="succeeded").count() >= 300, message="progress")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    lost = ProcrastinateJob.objects.filter(id__in=ids, status="doing").count()
    group.start("--queues", "filing-reminder")
    wait_for(
        lambda: ProcrastinateJob.objects.filter(id__in=ids, status="succeeded").count() == len(ids),
        timeout=120,
        message="every job to succeed",
    )
    assert lost > 0  # the kill did catch jobs claimed and running (or finished, not yet written)
    rescued = set(
        JobFailure.objects.filter(job_id__in=ids, exception_type="WorkerLost").values_list("job_id", flat=True)
    )
    assert len(rescued) == lost
    attempts = dict(ProcrastinateJob.objects.filter(id__in=ids).values_list("id", "attempts"))
    assert {attempts[job_id] for job_id in rescued} == {2} and set(attempts.values()) == {1, 2}


def _defer_many(task: str, count: int, **kwargs: object) -> list[tuple[int]]:
    from django.db import connection
    from psycopg.types.json import Jsonb

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT unnest(procrastinate_defer_jobs_v1(array_agg(
                   ROW('filing-reminder', %s, -100, NULL, NULL, %s::jsonb, NULL)::procrastinate_job_to_defer_v1)))
                 FROM generate_series(1, %s)""",
            [task, Jsonb(kwargs), count],
        )
        return cursor.fetchall()
