"""Writing jobs' outcomes in batches.

Outcomes wait in memory for a few milliseconds (``FLUSH_DELAY``) or until ``BATCH_MAX``
of them are waiting, then one statement (``sql.FINISH``) writes them all, with their
failure records. This is at least once, as before: a process that dies between a job's
end and the flush leaves the job running in the database under a worker that stops
beating, and the rescue puts it back in its queue, so it runs again. Email stays at
most once all the same, because sending claims the email row itself
(``notifications/delivery.py``).

The statement accepts an outcome only from the attempt that claimed the job (see
``sql.FINISH``): a late outcome of a job that was rescued and handed to another worker
meanwhile is refused and logged, never written over the new attempt's.

A batch the database refuses for a reason other than a fault of the connection or the
server (a value it cannot store, a constraint, any other SQL error) is split in halves
until the outcome it refuses is alone: the others are written, and one bad outcome never
holds up the rest nor brings the batch back for ever. That outcome is written without its
return value and failure text; if even that is refused, it is left out, and the job goes
back to its queue at the next reconciliation (``Worker._reconcile``): at least once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg

from kgc.queue import sql
from kgc.queue.db import Link
from kgc.queue.results import result_json, text_storable
from kgc.queue.runner import Outcome, log_fields
from kgc.queue.supervisor import DutyHandle

logger = logging.getLogger("kgc.worker")

FLUSH_DELAY = 0.01  # seconds an outcome may wait for others to share its statement
BATCH_MAX = 500
UNKNOWN = "unknown"  # the status of the outcome of a job whose task the worker does not know


def finish_params(batch: list[Outcome], *, keep_locks: bool) -> dict[str, Any]:
    failed = [outcome for outcome in batch if outcome.failure is not None]
    returned = [outcome for outcome in batch if outcome.status == "succeeded" and outcome.result is not None]
    return {
        "ids": [outcome.claim.job.id for outcome in batch],
        "workers": [outcome.claim.worker_id for outcome in batch],
        "attempts": [outcome.claim.attempts for outcome in batch],
        "statuses": [outcome.status for outcome in batch],
        "retry_at": [outcome.retry_at for outcome in batch],
        "durations": [outcome.duration for outcome in batch],
        "keep_locks": keep_locks,
        "failed_ids": [outcome.claim.job.id for outcome in failed],
        "failed_attempts": [outcome.failure.attempt for outcome in failed if outcome.failure],
        "failed_types": [outcome.failure.exception_type for outcome in failed if outcome.failure],
        "failed_messages": [outcome.failure.message for outcome in failed if outcome.failure],
        "failed_tracebacks": [outcome.failure.traceback for outcome in failed if outcome.failure],
        "failed_at": [outcome.failure.failed_at for outcome in failed if outcome.failure],
        "result_ids": [outcome.claim.job.id for outcome in returned],
        "result_attempts": [outcome.claim.attempts + 1 for outcome in returned],
        "result_values": [result_json(outcome.result) for outcome in returned],
    }


def outcome_simplified(outcome: Outcome, refusal: BaseException) -> Outcome:
    """The outcome without what the database refused: no return value, a plain failure text."""
    failure = outcome.failure
    if failure is not None:
        note = f"(the failure's text could not be stored: {type(refusal).__name__})"
        failure = dataclasses.replace(failure, exception_type=text_storable(failure.exception_type)[:255],
                                      message=note, traceback="")  # fmt: skip
    return dataclasses.replace(outcome, result=None, failure=failure)


# SQLSTATE classes of a server's passing state rather than of the statement: 25, a read-only
# server (a standby during a failover); XX, an internal error.
PASSING_STATES = ("25", "XX")


def refused_for_good(exc: BaseException) -> bool:
    """Whether the database refuses this statement whatever the moment: a value, a constraint,
    any SQL error but a fault of the connection or the server (which trying again may cure)."""
    if isinstance(exc, UnicodeError):
        return True
    if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    return not (exc.sqlstate or "").startswith(PASSING_STATES)


class Completer:
    def __init__(
        self,
        link: Link,
        *,
        timeout: float,
        on_written: Callable[[list[Outcome]], None],
        unknown_task_grace: float = 600.0,
        unknown_task_delay: float = 30.0,
    ) -> None:
        self.link = link
        self.timeout = timeout
        self.on_written = on_written
        self.unknown_task_grace = unknown_task_grace
        self.unknown_task_delay = unknown_task_delay
        self.pending: deque[Outcome] = deque()
        self._ready = asyncio.Event()
        self._writing = asyncio.Lock()  # one batch at a time: the duty's, or the shutdown's
        self.refused = 0
        self.unwritable: set[tuple[int, int, int]] = set()  # outcomes the database refused even simplified

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        self._ready.set()

    async def duty(self, handle: DutyHandle) -> None:
        """Flush outcomes as they come; a failed flush keeps them for the next try."""
        handle.healthy()
        while True:
            if not self.pending:
                self._ready.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._ready.wait()
                except TimeoutError:
                    handle.healthy()
                    continue
            if len(self.pending) < BATCH_MAX:
                await asyncio.sleep(FLUSH_DELAY)
            await self.flush_once()
            handle.healthy()

    async def flush_once(self) -> None:
        async with self._writing:
            await self._flush()

    async def _flush(self) -> None:
        batch = [self.pending.popleft() for _ in range(min(len(self.pending), BATCH_MAX))]
        if not batch:
            return
        try:
            accepted = await self._write(batch)
        except BaseException:
            self.pending.extendleft(reversed(batch))
            raise
        self.on_written(batch)
        self._report_refused(batch, accepted)

    async def flush_all(self, *, timeout: float) -> None:
        """Write everything still waiting (shutdown), after any batch being written; give up
        after ``timeout`` seconds (the jobs are then rescued: at least once)."""
        async with asyncio.timeout(timeout), self._writing:
            while self.pending:
                await self._flush()

    async def _write(self, batch: list[Outcome], *, simplified: bool = False) -> set[int]:
        try:
            try:
                return await self._statement(batch, keep_locks=True)
            except psycopg.errors.UniqueViolation:
                # A job enqueued at this very moment took a queueing lock a retry was keeping:
                # the retries go back without theirs.
                return await self._statement(batch, keep_locks=False)
        except (psycopg.Error, UnicodeError) as exc:
            if not refused_for_good(exc):
                raise  # the connection or the server: the batch is kept and written again
            return await self._write_refused(batch, exc, simplified=simplified)

    async def _write_refused(self, batch: list[Outcome], exc: BaseException, *, simplified: bool) -> set[int]:
        """A batch the database refuses: its halves are written apart, down to the one outcome
        it refuses, which is written simplified, or left out if even that is refused."""
        if len(batch) > 1:
            half = len(batch) // 2
            return await self._write(batch[:half]) | await self._write(batch[half:])
        fields = {**log_fields(batch[0].claim.job), "error": type(exc).__name__}
        if not simplified:
            logger.error(
                f"outcome written without its return value or failure text, which the database refused: {exc}",
                extra={**fields, "event": "job_outcome_simplified"},
            )
            return await self._write([outcome_simplified(batch[0], exc)], simplified=True)
        logger.error(
            f"outcome not written, the database refuses it ({exc}): the job goes back to its queue",
            extra={**fields, "event": "job_outcome_unwritable", "outcome": batch[0].status},
        )
        self.unwritable.add(batch[0].claim.token)
        return set()

    async def _statement(self, batch: list[Outcome], *, keep_locks: bool) -> set[int]:
        # Unknown tasks first (rare, one statement each): should the batch's statement fail
        # after them, trying the batch again finds them written and refuses them harmlessly.
        accepted: set[int] = set()
        for outcome in batch:
            if outcome.status == UNKNOWN:
                accepted |= await self._put_back_unknown(outcome)
        known = [outcome for outcome in batch if outcome.status != UNKNOWN]
        if known:
            params = finish_params(known, keep_locks=keep_locks)
            accepted |= {row["id"] for row in await self.link.execute(sql.FINISH, params, timeout=self.timeout)}
        return accepted

    async def _put_back_unknown(self, outcome: Outcome) -> set[int]:
        """A job of a task this worker does not know: back to its queue for a worker that knows
        it, or failed once nobody took it within the grace (``sql.PUT_BACK_UNKNOWN``)."""
        job = outcome.claim.job
        found = outcome.failure.message if outcome.failure else f"no task named {job.task_name!r} in this worker"
        grace = f"{self.unknown_task_grace:g} s (KGC_UNKNOWN_TASK_GRACE)"
        rows = await self.link.execute(
            sql.PUT_BACK_UNKNOWN,
            {
                "job_id": job.id,
                "attempts": outcome.claim.attempts,
                "worker_id": outcome.claim.worker_id,
                "grace": self.unknown_task_grace,
                "delay": self.unknown_task_delay,
                "message": f"{found}: put back for a worker that knows it; fails if none runs it within {grace}",
                "final_message": f"no worker that claimed it knew the task {job.task_name!r} within {grace} "
                f"(the last: {found}): is a worker of the release that declares it running?",
            },
            timeout=self.timeout,
        )
        fields = {**log_fields(job), "event": "job_task_unknown"}
        for row in rows:
            if row["status"] == "todo":
                logger.warning(
                    f"{found}: job put back for a worker that knows the task, claimed again in "
                    f"{self.unknown_task_delay:g} s; it fails if none runs it within {grace}",
                    extra={**fields, "will_retry": True},
                )
            else:
                logger.error(
                    f"job failed: {found}, and no worker that claimed it knew the task within {grace}",
                    extra={**fields, "will_retry": False},
                )
        return {row["id"] for row in rows}

    def _report_refused(self, batch: list[Outcome], accepted: set[int]) -> None:
        for outcome in batch:
            if outcome.claim.token in self.unwritable:
                self.unwritable.discard(outcome.claim.token)
                continue
            if outcome.claim.job.id in accepted:
                continue
            self.refused += 1
            logger.warning(
                f"outcome of a superseded attempt refused ({outcome.status}): the job was rescued meanwhile and "
                "belongs to a newer attempt",
                extra={**log_fields(outcome.claim.job), "event": "job_outcome_refused", "outcome": outcome.status},
            )
