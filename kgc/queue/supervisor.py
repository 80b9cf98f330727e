"""Supervision of a worker process's long-lived duties.

Each duty (the listener, the heartbeat, the fetch loop, the completer, the leader
election, the scheduler, the rescue, the counter compaction) is a coroutine that runs
for as long as the process does. The supervisor runs each one in a task of its own and:

* restarts a duty that raises, after a capped exponential backoff (0.5 s, 1 s, 2 s...
  up to 10 s), for as long as it keeps failing: a PostgreSQL restart or failover makes
  every duty fail for a few seconds, and each comes back on its own;
* treats a duty that stops reporting progress (``DutyHandle.healthy``) for longer than
  its ``stall_after`` as failing, and restarts it: a query stuck on a half-open
  connection must not freeze a duty silently;
* gives up when a duty has been failing for longer than the recovery timeout
  (``KGC_RECOVERY_TIMEOUT``, 5 minutes): the process then stops and exits non-zero,
  so that the process manager restarts it rather than leaving it half-dead.

Every duty's state (running, failing since when, restarts, last error) is kept in
``DutyStatus`` objects that the heartbeat writes to the database, where the health
endpoints and the console read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

logger = logging.getLogger("kgc.worker")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 10.0


class DutyState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STANDBY = "standby"  # alive, waiting for its turn (a singleton duty on a worker that is not the leader)
    FAILING = "failing"
    STOPPED = "stopped"  # finished on purpose (nothing to do)


class DutyStalled(Exception):
    """A duty reported no progress for longer than its ``stall_after``."""


def backoff_delay(failures: int, *, minimum: float = BACKOFF_MIN, maximum: float = BACKOFF_MAX) -> float:
    """Seconds before restart number ``failures`` (1 for the first): doubling, capped."""
    return min(maximum, minimum * 2 ** max(failures - 1, 0))


@dataclass
class DutyStatus:
    """What the supervisor knows of one duty; ``as_dict`` is what the heartbeat reports."""

    name: str
    state: DutyState = DutyState.STARTING
    restarts: int = 0
    failing_since: datetime | None = None
    failing_since_monotonic: float | None = field(default=None, repr=False)
    last_error: str = ""
    progress_at: float = field(default_factory=time.monotonic, repr=False)
    consecutive_failures: int = field(default=0, repr=False)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """The report; ``failing_for`` (seconds, on this process's monotonic clock) lets a reader
        place the start of a failure on the database's clock, whatever this machine's says."""
        failing_for = None
        if self.failing_since_monotonic is not None:
            failing_for = round((now if now is not None else time.monotonic()) - self.failing_since_monotonic, 3)
        return {
            "state": self.state.value,
            "restarts": self.restarts,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "failing_for": failing_for,
            "last_error": self.last_error,
        }


class DutyHandle:
    """Given to a running duty, to report how it is doing."""

    def __init__(self, status: DutyStatus, clock: Callable[[], float]) -> None:
        self._status = status
        self._clock = clock

    def healthy(self) -> None:
        """The duty did a round of its work: it is running, and no longer failing."""
        status = self._status
        status.progress_at = self._clock()
        if status.state is not DutyState.RUNNING:
            if status.state is DutyState.FAILING:
                logger.info(
                    f"duty {status.name} recovered after {status.restarts} restart(s)",
                    extra={"event": "duty_recovered", "duty": status.name},
                )
            status.state = DutyState.RUNNING
            status.failing_since = None
            status.failing_since_monotonic = None
            status.consecutive_failures = 0

    def standby(self) -> None:
        """The duty is alive and waiting for its turn (not the leader)."""
        self._status.progress_at = self._clock()
        if self._status.state is not DutyState.FAILING:
            self._status.state = DutyState.STANDBY


@dataclass
class Duty:
    name: str
    run: Callable[[DutyHandle], Coroutine[Any, Any, None]]
    # A running duty that reports no progress for this long counts as failing (None: never).
    stall_after: float | None = None


class Unrecoverable(Exception):
    """A duty kept failing for longer than the recovery timeout."""


class Supervisor:
    def __init__(
        self,
        *,
        recovery_timeout: float,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recovery_timeout = recovery_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.clock = clock
        self.statuses: dict[str, DutyStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._gave_up: asyncio.Future[Unrecoverable] | None = None

    def _gave_up_future(self) -> asyncio.Future[Unrecoverable]:
        if self._gave_up is None:
            self._gave_up = asyncio.get_running_loop().create_future()
        return self._gave_up

    def start(self, duty: Duty) -> None:
        status = self.statuses[duty.name] = DutyStatus(name=duty.name, progress_at=self.clock())
        self._tasks[duty.name] = asyncio.create_task(self._keep(duty, status), name=f"duty:{duty.name}")

    def report(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: status.as_dict(now) for name, status in self.statuses.items()}

    def failing(self) -> list[DutyStatus]:
        return [status for status in self.statuses.values() if status.state is DutyState.FAILING]

    async def gave_up(self) -> Unrecoverable:
        """Wait until a duty has been failing for longer than the recovery timeout."""
        return await asyncio.shield(self._gave_up_future())

    async def wait(self, name: str, *, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a duty to end by itself."""
        task = self._tasks.get(name)
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)

    async def stop(self, *names: str) -> None:
        """Cancel the named duties (all when none is named) and wait for them to end."""
        tasks = [task for name, task in self._tasks.items() if not names or name in names]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name, status in self.statuses.items():
            if not names or name in names:
                status.state = DutyState.STOPPED

    async def _keep(self, duty: Duty, status: DutyStatus) -> None:
        handle = DutyHandle(status, self.clock)
        while True:
            try:
                await self._run_watched(duty, status, handle)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure of a duty is survivable until the recovery timeout
                if not self._failed(duty, status, exc):
                    return
                delay = backoff_delay(status.consecutive_failures, minimum=self.backoff_min, maximum=self.backoff_max)
                await asyncio.sleep(delay)
                status.restarts += 1
                continue
            status.state = DutyState.STOPPED  # the duty ended on purpose: nothing to do
            return

    async def _run_watched(self, duty: Duty, status: DutyStatus, handle: DutyHandle) -> None:
        if status.state is not DutyState.FAILING:
            status.state = DutyState.STARTING
        status.progress_at = self.clock()
        runner: asyncio.Task[None] = asyncio.create_task(duty.run(handle), name=duty.name)
        if duty.stall_after is None:
            try:
                await runner
            finally:
                runner.cancel()
            return
        try:
            while not runner.done():
                idle = self.clock() - status.progress_at
                if idle > duty.stall_after:
                    raise DutyStalled(f"no progress for {idle:.0f} s")
                await asyncio.wait({runner}, timeout=max(duty.stall_after - idle, 0.05))
        finally:
            if not runner.done():
                runner.cancel()
                with contextlib.suppress(BaseException):
                    await runner
        runner.result()

    def _failed(self, duty: Duty, status: DutyStatus, exc: Exception) -> bool:
        """Record a failure; False when the duty has been failing for too long (the supervisor gave up)."""
        now = self.clock()
        first = status.state is not DutyState.FAILING
        if first:
            status.failing_since = datetime.now(tz=UTC)
            status.failing_since_monotonic = now
        status.state = DutyState.FAILING
        status.consecutive_failures += 1
        status.last_error = f"{type(exc).__name__}: {exc}"[:500]
        failing_for = now - (status.failing_since_monotonic or now)
        extra = {"event": "duty_failed", "duty": duty.name, "restarts": status.restarts, "error": type(exc).__name__}
        if first:
            logger.warning(f"duty {duty.name} failed, restarting: {status.last_error}", extra=extra, exc_info=exc)
        else:
            logger.warning(
                f"duty {duty.name} still failing after {failing_for:.0f} s: {status.last_error}", extra=extra
            )
        if failing_for <= self.recovery_timeout:
            return True
        message = f"duty {duty.name} has been failing for {failing_for:.0f} s: {status.last_error}"
        logger.critical(f"giving up: {message}", extra={**extra, "event": "worker_gave_up"})
        if not self._gave_up_future().done():
            self._gave_up_future().set_result(Unrecoverable(message))
        return False
