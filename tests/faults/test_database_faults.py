"""Workers keep running through database faults: restarts, outages, killed and half-open
connections, stalled heartbeats. Nothing stops silently, no job is lost, health tells the truth."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.conftest import Database, FaultWorkers, health, registered, wait_registered
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.fault]

EVERY_2_SECONDS = "* * * * * */2"


def ticks_after(database: Database, moment: float) -> list[tuple[str, int]]:
    """Each cron tick (of the test schedule) after ``moment``, with its number of jobs."""
    return database.rows(
        """SELECT args->>'timestamp', count(*) FROM procrastinate_jobs
            WHERE task_name = 'tests.tick' AND (args->>'timestamp')::bigint > %s GROUP BY 1 ORDER BY 1""",
        [int(moment)],
    )


def ran_ticks_after(database: Database, moment: float, count: int) -> bool:
    return (
        database.value(
            """SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'tests.tick' AND status = 'succeeded'
                AND (args->>'timestamp')::bigint > %s""",
            [int(moment)],
        )
        >= count
    )


def duties_healthy(database: Database, worker_id: int) -> bool:
    duties = database.value("SELECT duties FROM kgc_workerprocess WHERE worker_id = %s", [worker_id]) or {}
    return bool(duties) and all(duty["state"] in ("running", "standby") for duty in duties.values())


def recovers(database: Database, workers: FaultWorkers, processes: list, since: float) -> None:
    """After a fault: product queues run new jobs, the scheduler ticks, the rescue works, health is ok."""
    jobs = database.defer("tests.noop_compliance", "compliance", 2) + database.defer(
        "tests.noop_filing_reminder", "filing-reminder", 5
    )
    wait_for(lambda: database.safely(lambda: database.all_succeeded(jobs)), timeout=60, message="jobs after the fault")
    wait_for(lambda: database.safely(lambda: ran_ticks_after(database, since, 3)), timeout=60, message="cron ticks")
    assert {count for _, count in ticks_after(database, since)} == {1}  # one job per tick
    for process in processes:
        assert process.poll() is None, workers.log(process)
        wait_for(lambda p=process: duties_healthy(database, registered(database, p)), timeout=30, message="duties")
    code, checks = health(database.url)
    assert code == 0, checks


def test_everything_goes_on_after_a_database_restart(cluster, database, fault_workers):
    first = fault_workers.start(KGC_TEST_CRON=EVERY_2_SECONDS)
    second = fault_workers.start(KGC_TEST_CRON=EVERY_2_SECONDS)
    wait_registered(database, first)
    wait_registered(database, second)
    wait_for(lambda: ran_ticks_after(database, 0, 1), timeout=60, message="a first tick")

    cluster.restart()
    restarted = time.time()
    recovers(database, fault_workers, [first, second], restarted)

    # The rescue survived too: a job whose worker is killed runs again on the other.
    [job] = database.defer("tests.sleep_compliance", "compliance", seconds=60, first_attempt_only=True)
    wait_for(lambda: database.statuses([job]) == ["doing"], message="the long job to start")
    owner = database.value(
        "SELECT pid FROM kgc_workerprocess JOIN procrastinate_jobs j USING (worker_id) WHERE j.id = %s", [job]
    )
    os.kill(owner, signal.SIGKILL)
    wait_for(lambda: database.all_succeeded([job]), timeout=60, message="the rescued job")
    assert database.value("SELECT exception_type FROM kgc_jobfailure WHERE job_id = %s", [job]) == "WorkerLost"


def test_everything_goes_on_after_the_database_is_down_for_8_seconds(cluster, database, fault_workers):
    worker = fault_workers.start(KGC_TEST_CRON=EVERY_2_SECONDS)
    worker_id = wait_registered(database, worker)
    cluster.stop()
    time.sleep(8)
    cluster.start()
    restarted = time.time()
    wait_for(
        lambda: database.safely(
            lambda: database.value(
                "SELECT duties->'heartbeat'->>'restarts' FROM kgc_workerprocess WHERE worker_id = %s", [worker_id]
            )
        ),
        timeout=30,
        message="the heartbeat's report",
    )
    recovers(database, fault_workers, [worker], restarted)
    # The outage was survived, not slept through: the duties failed and were restarted.
    restarts = database.value(
        "SELECT duties->'heartbeat'->>'restarts' FROM kgc_workerprocess WHERE pid = %s", [worker.pid]
    )
    assert int(restarts) >= 1
    assert "duty heartbeat failed, restarting" in fault_workers.log(worker)


def test_polling_covers_a_killed_listener_which_reconnects(database, fault_workers):
    worker = fault_workers.start(KGC_POLL_INTERVAL="1")
    worker_id = wait_registered(database, worker)
    assert database.value(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kgc-worker:listener'"
    )
    jobs = database.defer("tests.noop_filing_reminder", "filing-reminder", 3)
    wait_for(lambda: database.all_succeeded(jobs), timeout=30, message="jobs picked up by polling")
    wait_for(
        lambda: database.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kgc-worker:listener'"),
        timeout=30,
        message="the listener to reconnect",
    )
    wait_for(
        lambda: (
            int(
                database.value(
                    "SELECT duties->'listener'->>'restarts' FROM kgc_workerprocess WHERE worker_id = %s", [worker_id]
                )
                or 0
            )
            >= 1
        ),
        timeout=30,
        message="the listener's restart to be reported",
    )


STALL_HEARTBEAT = """
CREATE FUNCTION test_stall_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(3600);
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_stall_heartbeat BEFORE UPDATE ON procrastinate_workers
    FOR EACH ROW WHEN (OLD.id = {worker_id}) EXECUTE FUNCTION test_stall_heartbeat();
"""
UNSTALL_HEARTBEAT = "DROP TRIGGER test_stall_heartbeat ON procrastinate_workers"


def test_a_worker_whose_heartbeat_stalls_stops_claiming_until_it_beats_again(database, fault_workers):
    worker = fault_workers.start(KGC_WORKER_DEAD_AFTER="60", KGC_LEADER_TTL="2")
    worker_id = wait_registered(database, worker)
    database.rows(STALL_HEARTBEAT.format(worker_id=worker_id))
    wait_for(lambda: "duty heartbeat failed" in fault_workers.log(worker), timeout=30, message="the heartbeat to fail")
    jobs = database.defer("tests.noop_filing_reminder", "filing-reminder", 3)
    time.sleep(3)  # several polls of a worker that must not claim
    assert database.statuses(jobs) == ["todo"] * 3
    database.rows(UNSTALL_HEARTBEAT)
    wait_for(lambda: database.all_succeeded(jobs), timeout=30, message="jobs once the heartbeat is back")
    assert registered(database, worker) == worker_id  # never declared dead: the same registration


def test_a_worker_declared_dead_registers_again_and_its_late_outcome_is_refused(database, fault_workers):
    cut_off = fault_workers.start("--queues", "compliance,maintenance")
    cut_off_id = wait_registered(database, cut_off)
    [job] = database.defer("tests.sleep_compliance", "compliance", seconds=8, first_attempt_only=True)
    wait_for(lambda: database.statuses([job]) == ["doing"], message="the job to start")
    survivor = fault_workers.start("--queues", "compliance,maintenance")
    wait_registered(database, survivor)

    database.rows(STALL_HEARTBEAT.format(worker_id=cut_off_id))
    # Declared dead (3 s without a heartbeat), its job goes to the survivor as attempt 2.
    wait_for(lambda: database.all_succeeded([job]), timeout=60, message="the rescued job to succeed elsewhere")
    # The first attempt ends 8 s in: its late outcome must not overwrite the second's.
    wait_for(lambda: "job_outcome_refused" in fault_workers.log(cut_off), timeout=30, message="the late outcome")
    assert database.rows("SELECT status::text, attempts FROM procrastinate_jobs WHERE id = %s", [job]) == [
        ("succeeded", 2)
    ]
    assert database.rows("SELECT attempt, exception_type FROM kgc_jobfailure WHERE job_id = %s", [job]) == [
        (1, "WorkerLost")
    ]

    database.rows(UNSTALL_HEARTBEAT)
    new_id = wait_for(
        lambda: (registered(database, cut_off) or 0) > cut_off_id and registered(database, cut_off),
        timeout=30,
        message="the worker to register again",
    )
    assert cut_off.poll() is None, fault_workers.log(cut_off)  # no crash on the foreign key
    [later] = database.defer("tests.noop_compliance", "compliance")
    wait_for(lambda: database.all_succeeded([later]), timeout=30, message="a job after re-registration")
    assert "worker_reregistering" in fault_workers.log(cut_off)
    assert new_id != cut_off_id


def test_a_half_open_connection_fences_the_worker_until_new_connections_work(database, fault_workers, proxy):
    proxied = database.url.replace(f":{database.url.split(':')[-1].split('/')[0]}/", f":{proxy.port}/")
    worker = fault_workers.start(DATABASE_URL=proxied, KGC_WORKER_DEAD_AFTER="60")
    worker_id = wait_registered(database, worker)
    proxy.freeze()  # every open connection now hangs, and new ones are never answered
    jobs = database.defer("tests.noop_filing_reminder", "filing-reminder", 3)
    wait_for(lambda: "duty heartbeat failed" in fault_workers.log(worker), timeout=60, message="the stalled heartbeat")
    assert database.statuses(jobs) == ["todo"] * 3  # fenced: nothing claimed through a dead connection
    proxy.thaw()
    wait_for(lambda: database.all_succeeded(jobs), timeout=90, message="jobs through new connections")
    assert worker.poll() is None
    assert registered(database, worker) == worker_id


def test_a_worker_that_cannot_recover_exits_non_zero(cluster, database, fault_workers):
    single = fault_workers.start(KGC_RECOVERY_TIMEOUT="4")
    group = fault_workers.start("--processes", "2", KGC_RECOVERY_TIMEOUT="4")
    wait_registered(database, single)
    wait_for(lambda: database.value("SELECT count(*) FROM kgc_workerprocess") >= 3, message="all workers")
    cluster.stop()
    try:
        assert single.wait(timeout=90) == 3, fault_workers.log(single)
        assert group.wait(timeout=90) == 3, fault_workers.log(group)  # the parent exits with its children's code
    finally:
        cluster.start()
    assert "giving up: duty" in fault_workers.log(single)


def test_through_pgbouncer_everything_goes_on_after_a_database_restart(cluster, database, fault_workers, pgbouncer):
    worker = fault_workers.start(DATABASE_URL=pgbouncer.url(database.url), KGC_TEST_CRON=EVERY_2_SECONDS)
    wait_registered(database, worker)
    wait_for(lambda: ran_ticks_after(database, 0, 1), timeout=60, message="a first tick")
    cluster.restart()
    recovers(database, fault_workers, [worker], time.time())
    assert "duty heartbeat failed" in fault_workers.log(worker) or "duty listener failed" in fault_workers.log(worker)


def test_a_failover_during_shutdown_leaves_the_job_to_the_rescue_not_aborted(cluster, database, fault_workers):
    """The put-back at the shutdown timeout meets a connection the restart cut: the job gets no
    outcome from the stopping worker (before, its cancellation was written as ``aborted``)."""
    stopping = fault_workers.start("--queues", "maintenance", KGC_SHUTDOWN_TIMEOUT="4")
    wait_registered(database, stopping)
    warm_up = database.defer("tests.noop_maintenance", "maintenance")  # outcomes' connection now open
    wait_for(lambda: database.all_succeeded(warm_up), message="a first outcome")
    [job] = database.defer("tests.wait_async", "maintenance", seconds=120, first_attempt_only=True)
    wait_for(lambda: database.statuses([job]) == ["doing"], message="the job to start")
    stopping.send_signal(signal.SIGTERM)
    cluster.restart()  # within the shutdown timeout: the connections the worker holds are cut
    assert stopping.wait(timeout=60) == 0, fault_workers.log(stopping)
    assert database.statuses([job]) == ["doing"]
    assert "left for the rescue" in fault_workers.log(stopping)
    fault_workers.start("--queues", "maintenance")
    wait_for(lambda: database.all_succeeded([job]), timeout=60, message="the rescued job")
    assert database.value("SELECT exception_type FROM kgc_jobfailure WHERE job_id = %s", [job]) == "WorkerLost"
