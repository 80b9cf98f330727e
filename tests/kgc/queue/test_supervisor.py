"""The supervisor restarts failing duties with capped backoff, spots stalled ones, and gives up in time."""

from __future__ import annotations

import asyncio

import pytest

from kgc.queue.supervisor import Duty, DutyHandle, DutyState, Supervisor, backoff_delay


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (50, 10.0)])
def test_backoff_doubles_from_half_a_second_up_to_ten(failures, delay):
    assert backoff_delay(failures) == delay


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_a_failing_duty_is_restarted_until_it_recovers():
    attempts = []

    async def flaky(handle: DutyHandle) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("database restarting")
        handle.healthy()
        await asyncio.sleep(3600)

    async def scenario() -> tuple:
        supervisor = Supervisor(recovery_timeout=60, backoff_min=0.01, backoff_max=0.02)
        supervisor.start(Duty("heartbeat", flaky))
        while len(attempts) < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        status = supervisor.statuses["heartbeat"]
        result = (status.state, status.restarts, status.failing_since, status.last_error)
        await supervisor.stop()
        return result

    state, restarts, failing_since, last_error = run(scenario())
    assert (state, restarts, failing_since) == (DutyState.RUNNING, 2, None)
    assert last_error == "ConnectionError: database restarting"  # kept for the console


def test_a_duty_failing_past_the_recovery_timeout_makes_the_supervisor_give_up():
    async def broken(handle: DutyHandle) -> None:
        raise ConnectionError("connection refused")

    async def scenario() -> str:
        supervisor = Supervisor(recovery_timeout=0.1, backoff_min=0.01, backoff_max=0.02)
        supervisor.start(Duty("listener", broken))
        gave_up = await supervisor.gave_up()
        await supervisor.stop()
        return str(gave_up)

    assert run(scenario()).startswith("duty listener has been failing for")


def test_a_duty_without_progress_is_treated_as_failing_and_restarted():
    starts = []

    async def stuck(handle: DutyHandle) -> None:
        starts.append(1)
        handle.healthy()
        await asyncio.sleep(3600)  # a query on a dead connection that never returns

    async def scenario() -> tuple:
        supervisor = Supervisor(recovery_timeout=60, backoff_min=0.01, backoff_max=0.02)
        supervisor.start(Duty("fetch", stuck, stall_after=0.05))
        while len(starts) < 2:
            await asyncio.sleep(0.01)
        status = supervisor.statuses["fetch"]
        result = (status.restarts >= 1, status.last_error)
        await supervisor.stop()
        return result

    restarted, last_error = run(scenario())
    assert restarted and last_error.startswith("DutyStalled: no progress for")


def test_a_duty_that_returns_is_stopped_not_restarted():
    calls = []

    async def nothing_to_do(handle: DutyHandle) -> None:
        calls.append(1)

    async def scenario() -> DutyState:
        supervisor = Supervisor(recovery_timeout=60)
        supervisor.start(Duty("scheduler", nothing_to_do))
        await asyncio.sleep(0.05)
        return supervisor.statuses["scheduler"].state

    assert run(scenario()) is DutyState.STOPPED
    assert calls == [1]


def test_each_duty_is_supervised_on_its_own():
    """procrastinate's monitor waited for the first side task only; a later failure went unseen."""

    async def returns_at_once(handle: DutyHandle) -> None:
        return None

    async def fails_later(handle: DutyHandle) -> None:
        handle.healthy()
        await asyncio.sleep(0.05)
        raise ConnectionError("heartbeat lost")

    async def scenario() -> dict:
        supervisor = Supervisor(recovery_timeout=60, backoff_min=0.01, backoff_max=0.02)
        supervisor.start(Duty("scheduler", returns_at_once))
        supervisor.start(Duty("heartbeat", fails_later))
        while supervisor.statuses["heartbeat"].restarts < 1:
            await asyncio.sleep(0.01)
        report = supervisor.report()
        await supervisor.stop()
        return report

    report = run(scenario())
    assert report["scheduler"]["state"] == "stopped"
    assert (
        report["heartbeat"]["restarts"] >= 1 and report["heartbeat"]["last_error"] == "ConnectionError: heartbeat lost"
    )
