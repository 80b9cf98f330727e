"""One worker process: it claims jobs, runs them, records their outcomes, and keeps its duties alive.

Duties, each under the supervisor (``kgc/queue/supervisor.py``), each on a database
connection of its own (``kgc/queue/db.py``; the leader's rarer duties share one):

* ``heartbeat``: registers the process (a ``procrastinate_workers`` row, whose id fences
  every claim) and beats every ``KGC_HEARTBEAT_INTERVAL`` seconds, reporting the duties'
  states with it. A beat that fails, or none for ``fence_after`` seconds, *fences* the
  worker: it claims nothing until it beats again. A worker declared dead and removed
  meanwhile registers again under a new id.
* ``listener``: LISTEN for new jobs and abort requests; reconnects by itself. While it
  is down the fetch loop still polls every ``KGC_POLL_INTERVAL`` seconds.
* ``fetch``: claims as many due jobs per queue as the queue has free slots, in one
  statement for all queues (``kgc_fetch_jobs``: pause, rate limits, priorities, locks),
  and starts them at once, so a claimed job never waits in a local buffer: a pause is
  seen by the next claim. After a job ends it waits up to 20 ms for more slots to free,
  so that claims come in batches. It also puts back any job its registration holds in
  the database but not in memory (a claim whose answer was lost).
* ``complete``: writes outcomes in batches (``kgc/queue/completer.py``).
* ``leader``: the election (``kgc/queue/leader.py``); and, on the leader only,
  ``scheduler``, ``rescue`` (declares silent workers dead and puts their jobs back) and
  ``compaction`` (folds the job counters).
* ``abort``: looks for operators' abort requests of running jobs.
* the duties of each row queue it serves (``kgc/queue/rows.py``): the email outbox's
  dispatcher, for one; woken by their own notification channels.

Shutdown (SIGTERM, SIGINT): stop claiming, resign the lease, let running jobs finish
for ``KGC_SHUTDOWN_TIMEOUT`` seconds with the heartbeat still beating, put back any job
still running after that (it runs again: at least once), write the outcomes,
unregister. A job given up on that way never gets an outcome from this process: one the
worker cannot put back (the database out of reach) is left to the rescue. A duty failing
for longer than ``KGC_RECOVERY_TIMEOUT`` makes the process stop the same way and exit
with ``EXIT_UNRECOVERABLE``.

The overlap window. A sync task cannot be interrupted. If its worker is cut off from the
database for longer than ``KGC_WORKER_DEAD_AFTER``, the leader declares it dead and puts
its jobs back, and another worker may start one while the first still runs it, until
the task returns (its late outcome is then refused: ``sql.FINISH``). Email is still sent
at most once: the send claims the email row and holds a lock on it for the whole send
(``notifications/delivery.py``), so the second run finds the row taken or in
``sending`` and never sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from procrastinate import App
from procrastinate import jobs as jobs_module
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from kgc.queue import sql
from kgc.queue.completer import Completer
from kgc.queue.config import (
    ABORT_POLL_PERIOD,
    LONG_QUERY_TIMEOUT,
    MAINTENANCE_PERIOD,
    STATEMENT_TIMEOUT,
    WorkerConfig,
)
from kgc.queue.db import Link, connection_params
from kgc.queue.leader import LeaderElector
from kgc.queue.rows import ConsumerContext, QueueConsumer, row_queue_get
from kgc.queue.runner import Claim, JobRunner, Outcome, log_fields
from kgc.queue.scheduler import Scheduler
from kgc.queue.supervisor import Duty, DutyHandle, Supervisor
from kgc.queues import QUEUES, rate_limits

logger = logging.getLogger("kgc.worker")

EXIT_UNRECOVERABLE = 3
NOT_REGISTERED = "KGC01"  # kgc_fetch_jobs: this worker's registration was removed
LISTEN_CHECK = 5.0  # seconds of silence after which the listener checks its connection
QUEUE_CHANNEL = "procrastinate_queue_v1#{queue}"
# How long a claim may wait for more of a queue's slots to free up (see _batch_pending).
CLAIM_BATCH_WINDOW = 0.02
# How often the fetch loop puts back jobs its registration holds in the database and not in memory.
RECONCILE_PERIOD = 30.0
# What became of a job still running at the shutdown timeout (the stop's summary counts them).
# GONE: the job was no longer this attempt's (rescued meanwhile).
PUT_BACK, FAILED, GONE = "put back", "failed", "gone"


class Worker:
    def __init__(self, app: App, config: WorkerConfig, *, params: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.config = config
        self.queue_names = sorted(config.queues)  # kgc_fetch_jobs takes rate-limit locks in this order
        params = dict(params if params is not None else connection_params())
        self.links = {name: Link(name, params) for name in ("heartbeat", "listener", "fetch", "complete", "leader")}
        # The leader's scheduler, rescue and compaction and the abort poll are brief and rare:
        # they share one connection.
        self.links["control"] = Link("control", params, shared=True)
        self.supervisor = Supervisor(recovery_timeout=config.recovery_timeout)
        self.worker_id: int | None = None
        self.running: dict[str, int] = dict.fromkeys(self.queue_names, 0)
        self._jobs: dict[asyncio.Task[None], Claim] = {}
        # A queue whose last claim came back short is not claimed from again until a
        # notification says it has new jobs, or until the next poll.
        self._drained_until: dict[str, float] = dict.fromkeys(self.queue_names, 0.0)
        self._notified_at: dict[str, float] = dict.fromkeys(self.queue_names, 0.0)
        self._slots_free_since: float | None = None  # when a job last freed a slot since the last claim
        self._reconciled_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_beat = -1e9
        self._beat_failed = False
        self.exit_code = 0
        self.abandoned: list[Claim] = []  # jobs still running at the shutdown timeout, put back
        # Jobs at once per queue. A row queue's concurrency is its consumer's (its rows in hand);
        # jobs of such a queue (an earlier release's, say) run one at a time beside it.
        self.job_slots = {name: 1 if row_queue_get(name) else count for name, count in config.queues.items()}
        self.executor = ThreadPoolExecutor(max_workers=max(sum(self.job_slots.values()), 1), thread_name_prefix="job")
        self.runner = JobRunner(app, executor=self.executor, worker_name=config.name, queues=self.queue_names)
        # Attempts claimed and not yet finished in the database (running, or their outcome
        # waiting), as (job id, worker id, attempts): the same job may have an old attempt's
        # outcome waiting and a new attempt running.
        self._held: set[tuple[int, int, int]] = set()
        self.completer = Completer(
            self.links["complete"],
            timeout=STATEMENT_TIMEOUT,
            on_written=self._written,
            unknown_task_grace=config.unknown_task_grace,
            unknown_task_delay=config.unknown_task_delay,
        )
        self.elector = LeaderElector(
            self.links["leader"],  # its own: the lease is never renewed late behind a long rescue
            ttl=config.leader_ttl,
            worker_id=lambda: self.worker_id,
            fenced=self.fenced,
            timeout=config.query_timeout,
        )
        self.scheduler = Scheduler(
            app=app,
            link=self.links["control"],
            is_leader=self.elector.is_leader,
            worker_id=lambda: self.worker_id,
            catch_up=config.scheduler_catch_up,
            timeout=STATEMENT_TIMEOUT,
        )
        # Queues whose items are an app's rows: their consumers claim them, and apply the
        # queue's rate limit to them; the jobs of such a queue (if any) are not limited.
        self.consumers: dict[str, QueueConsumer] = {}
        for name in self.queue_names:
            row_queue = row_queue_get(name)
            if row_queue is not None:
                self.consumers[name] = row_queue.consumer(
                    ConsumerContext(
                        queue=name,
                        concurrency=config.queues[name],
                        connection_params=params,
                        worker_id=lambda: self.worker_id,
                        fenced=self.fenced,
                        is_leader=self.elector.is_leader,
                        poll_interval=config.poll_interval,
                        dead_after=config.dead_after,
                    )
                )
        self._consumer_channels: dict[str, list[QueueConsumer]] = {}
        for consumer in self.consumers.values():
            for channel in consumer.channels:
                self._consumer_channels.setdefault(channel, []).append(consumer)
        limits = sorted((name, limit) for name, limit in rate_limits().items() if name not in self.consumers)
        self._limits = {
            "limited": [name for name, _ in limits],
            "limits": [limit.limit for _, limit in limits],
            "windows": [limit.per.total_seconds() for _, limit in limits],
        }

    # --- Running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the shutdown timeout to finish (safe from a signal handler)."""
        if not self._stopping.is_set():
            logger.info(
                "stopping: no new jobs; running jobs get their shutdown timeout to finish",
                extra={"event": "worker_stopping", "worker_id": self.worker_id},
            )
        self._stopping.set()
        self._wake.set()

    async def run(self) -> int:
        """Run until stopped; return the exit code (0, or EXIT_UNRECOVERABLE)."""
        duties = [
            Duty("heartbeat", self._heartbeat_duty, stall_after=self.config.dead_after),
            Duty("listener", self._listener_duty, stall_after=LISTEN_CHECK * 4 + self.config.query_timeout),
            Duty("fetch", self._fetch_duty, stall_after=STATEMENT_TIMEOUT * 2),
            Duty("complete", self.completer.duty, stall_after=STATEMENT_TIMEOUT * 2),
            Duty("leader", self.elector.duty, stall_after=self.config.leader_ttl * 4),
            Duty("scheduler", self.scheduler.duty, stall_after=STATEMENT_TIMEOUT * 4),
            Duty("rescue", self._rescue_duty, stall_after=LONG_QUERY_TIMEOUT * 2),
            Duty("compaction", self._compaction_duty, stall_after=LONG_QUERY_TIMEOUT * 2),
            Duty("abort", self._abort_duty, stall_after=STATEMENT_TIMEOUT * 2),
        ]
        for consumer in self.consumers.values():
            duties += consumer.duties()
        for duty in duties:
            self.supervisor.start(duty)
        stopped = asyncio.ensure_future(self._stopping.wait())
        gave_up = asyncio.ensure_future(self.supervisor.gave_up())
        await asyncio.wait({stopped, gave_up}, return_when=asyncio.FIRST_COMPLETED)
        if gave_up.done():
            self.exit_code = EXIT_UNRECOVERABLE
            self.stop()
        gave_up.cancel()
        await self._shutdown()
        return self.exit_code

    def fenced(self) -> bool:
        """True while this worker must not claim: unregistered, or its heartbeat is failing or late."""
        return (
            self.worker_id is None or self._beat_failed or time.monotonic() - self._last_beat > self.config.fence_after
        )

    # --- Heartbeat ----------------------------------------------------------------------------

    async def _heartbeat_duty(self, handle: DutyHandle) -> None:
        while True:
            try:
                if self.worker_id is None:
                    await self._register()
                else:
                    await self._beat()
            except BaseException:
                self._beat_failed = True
                raise
            self._beat_failed = False
            handle.healthy()
            if not self.fenced():
                self._wake.set()
            await asyncio.sleep(self.config.heartbeat_interval)

    async def _register(self) -> None:
        rows = await self.links["heartbeat"].execute(
            sql.REGISTER,
            {
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "queues": self.queue_names,
                "concurrency": Jsonb(dict(self.config.queues)),
                "duties": Jsonb(self.supervisor.report()),
            },
            timeout=self.config.query_timeout,
        )
        self._last_beat = time.monotonic()
        self.worker_id = rows[0]["worker_id"]
        self.elector.wake.set()  # a candidate for the lease from now on
        logger.info(
            f"worker registered on {', '.join(f'{q} ({n})' for q, n in self.config.queues.items())}",
            extra={"event": "worker_registered", "worker_id": self.worker_id, "pid": os.getpid()},
        )

    async def _beat(self) -> None:
        sent = time.monotonic()
        rows = await self.links["heartbeat"].execute(
            sql.HEARTBEAT,
            {"worker_id": self.worker_id, "duties": Jsonb(self.supervisor.report())},
            timeout=self.config.query_timeout,
        )
        if rows:
            self._last_beat = sent
            return
        logger.warning(
            "this worker was declared dead while cut off from the database; its running jobs were given to "
            "others, and their outcomes here will be refused. Registering again.",
            extra={"event": "worker_reregistering", "worker_id": self.worker_id},
        )
        self.worker_id = None
        await self._register()

    # --- Listening ----------------------------------------------------------------------------

    async def _listener_duty(self, handle: DutyHandle) -> None:
        link = self.links["listener"]
        channels = [QUEUE_CHANNEL.format(queue=name) for name in self.queue_names] + [sql.LEADERSHIP_CHANNEL]
        channels += list(self._consumer_channels)
        async with link.using(self.config.query_timeout) as listening:
            for channel in channels:
                await listening.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
        # Notifications sent while it was down are lost: look at every queue now.
        self._undrain(self.queue_names)
        for consumer in self.consumers.values():
            consumer.wake()
        handle.healthy()
        while True:
            if listening.closed:  # a new connection would not be listening: start over
                raise ConnectionError("the listening connection was closed")
            try:
                async for notify in listening.notifies(timeout=LISTEN_CHECK):
                    self._notified(notify.channel, notify.payload)
                async with link.using(self.config.query_timeout) as conn:
                    await conn.execute("SELECT 1")  # silence, or a dead connection? A half-open one fails here
            except BaseException:
                await link.drop()
                raise
            handle.healthy()

    def _notified(self, channel: str, payload: str) -> None:
        if channel == sql.LEADERSHIP_CHANNEL:
            self.elector.wake.set()
            return
        if channel in self._consumer_channels:
            for consumer in self._consumer_channels[channel]:
                consumer.wake()
            return
        queue = channel.partition("#")[2]
        if queue in self.consumers:  # a resumed queue, say
            self.consumers[queue].wake()
        if "abort_job_requested" in payload:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                job_id = int(json.loads(payload)["job_id"])
                if any(claim.job.id == job_id for claim in self._jobs.values()):  # a job running here
                    self.runner.abort(job_id)
            return
        self._undrain([queue])

    # --- Claiming -----------------------------------------------------------------------------

    def _undrain(self, queues: list[str]) -> None:
        now = time.monotonic()
        for queue in queues:
            if queue in self._drained_until:
                self._drained_until[queue] = 0.0
                self._notified_at[queue] = now
        self._wake.set()

    def _wants(self, now: float) -> dict[str, int]:
        wants = {}
        for queue in self.queue_names:
            free = self.job_slots[queue] - self.running[queue]
            if free > 0 and now >= self._drained_until[queue]:
                wants[queue] = free
        return wants

    async def _fetch_duty(self, handle: DutyHandle) -> None:
        await self._reconcile()
        handle.healthy()
        while not self._stopping.is_set():
            self._wake.clear()
            now = time.monotonic()
            if now - self._reconciled_at > RECONCILE_PERIOD:
                await self._reconcile()
            wants = {} if self.fenced() else self._wants(now)
            held_back = self._batch_pending(wants, now)
            claimed = await self._claim(wants, now) if wants and held_back is None else 0
            handle.healthy()
            if self.config.one_shot and wants and not claimed and not self._jobs:
                self.stop()  # ``--one-shot``: the queues are empty
                return
            timeout = self.config.poll_interval if held_back is None else held_back
            upcoming = [until - now for until in self._drained_until.values() if until > now]
            if upcoming:
                timeout = min(timeout, *upcoming)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.001)):
                    await self._wake.wait()

    def _batch_pending(self, wants: dict[str, int], now: float) -> float | None:
        """Seconds to wait for more free slots before claiming (None: claim now).

        A claim is one statement whatever its size: claiming the moment each job ends
        would claim one job at a time when jobs take a while. So a claim waits, at most
        CLAIM_BATCH_WINDOW after the first slot freed, until half a queue's slots are free;
        an idle worker (every slot free) claims at once.
        """
        if not wants or self._slots_free_since is None:
            return None
        if any(free >= max(1, self.job_slots[queue] // 2) for queue, free in wants.items()):
            return None
        left = self._slots_free_since + CLAIM_BATCH_WINDOW - now
        return left if left > 0 else None

    async def _claim(self, wants: dict[str, int], now: float) -> int:
        """Claim and start up to ``wants`` jobs per queue; return how many were claimed."""
        names = list(wants)
        worker_id = self.worker_id
        if worker_id is None:
            return 0
        self._slots_free_since = None
        try:
            rows = await self.links["fetch"].execute(
                sql.CLAIM,
                {"queues": names, "wants": [wants[n] for n in names], "worker_id": worker_id, **self._limits},
                timeout=STATEMENT_TIMEOUT,
            )
        except psycopg.Error as exc:
            if exc.sqlstate == NOT_REGISTERED:
                # Declared dead while cut off: the heartbeat registers again; claim nothing meanwhile.
                self._beat_failed = True
                return 0
            raise
        got: dict[str, int] = {}
        for row in rows:
            claim = Claim(job=jobs_module.Job.from_row(row), worker_id=worker_id)
            got[claim.job.queue] = got.get(claim.job.queue, 0) + 1
            self._start(claim)
        for queue, want in wants.items():
            # Nothing more due (or paused, or rate-limited): wait for a notification or the next
            # poll; unless a notification came while this claim was under way.
            if got.get(queue, 0) < want and self._notified_at[queue] < now:
                self._drained_until[queue] = now + self.config.poll_interval
        return len(rows)

    async def _reconcile(self) -> None:
        """Put back jobs claimed under this registration that this process does not hold.

        A claim that failed on our side may still have committed on the server, and nobody
        else would ever put those jobs back while this worker beats. Runs whenever the fetch
        loop (re)starts, after ending the server process of any severed claim (so that it
        cannot commit afterwards), and every RECONCILE_PERIOD besides.
        """
        self._reconciled_at = time.monotonic()
        if self.worker_id is None:
            return
        link = self.links["fetch"]
        if link.severed_backends:
            await self._end_severed(link)
        rows = await link.execute(
            sql.RECONCILE,
            {"worker_id": self.worker_id, "held": [job for job, worker, _ in self._held if worker == self.worker_id]},
            timeout=STATEMENT_TIMEOUT,
        )
        if rows:
            logger.warning(
                f"{len(rows)} job(s) claimed by a claim whose answer was lost put back in their queue",
                extra={"event": "jobs_reconciled", "job_ids": ",".join(str(row["id"]) for row in rows)},
            )

    async def _end_severed(self, link: Link) -> None:
        """End the server processes of severed claims, and wait (5 s at most) until they are gone.

        Best effort: without the right to end them (another role's), the claim may still commit
        later, and the next periodic reconciliation puts its jobs back.
        """
        pids, link.severed_backends = list(link.severed_backends), []
        try:
            await link.execute(sql.TERMINATE_BACKENDS, {"pids": pids}, timeout=STATEMENT_TIMEOUT)
            for _ in range(50):
                [found] = await link.execute(sql.BACKENDS_ALIVE, {"pids": pids}, timeout=STATEMENT_TIMEOUT)
                if not found["alive"]:
                    return
                await asyncio.sleep(0.1)
        except psycopg.errors.InsufficientPrivilege as exc:
            logger.warning(
                f"could not end the server process of a severed claim: {exc}", extra={"event": "claim_severed"}
            )

    def _written(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self._held.discard(outcome.claim.token)

    def _start(self, claim: Claim) -> None:
        self._held.add(claim.token)
        queue = claim.job.queue
        self.running[queue] = self.running.get(queue, 0) + 1
        task = asyncio.create_task(self._run_job(claim), name=f"job {claim.job.id}")
        self._jobs[task] = claim

    async def _run_job(self, claim: Claim) -> None:
        try:
            outcome = await self.runner.run(claim)
            if claim.token in self._held:  # not put back at shutdown meanwhile
                self.completer.add(outcome)
        finally:
            self.running[claim.job.queue] -= 1
            self._jobs.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            if self._slots_free_since is None:
                self._slots_free_since = time.monotonic()
            self._wake.set()

    # --- Leader duties --------------------------------------------------------------------------

    async def _rescue_duty(self, handle: DutyHandle) -> None:
        while True:
            if self.elector.is_leader():
                await self.rescue_once()
                handle.healthy()
            else:
                handle.standby()
            await asyncio.sleep(MAINTENANCE_PERIOD)

    async def rescue_once(self) -> None:
        link = self.links["control"]
        pruned = await link.execute(sql.PRUNE, {"dead_after": self.config.dead_after}, timeout=LONG_QUERY_TIMEOUT)
        for row in pruned:
            logger.warning(
                f"worker {row['id']} declared dead: no heartbeat for {self.config.dead_after:g} s",
                extra={"event": "worker_declared_dead", "dead_worker_id": row["id"]},
            )
        params: dict[str, Any] = {
            "dead_after": self.config.dead_after,
            "queues": list(QUEUES),
            "max_attempts": [queue.retry.max_attempts for queue in QUEUES.values()],
            "keep_locks": True,
        }
        try:
            rows = await link.execute(sql.RESCUE, params, timeout=LONG_QUERY_TIMEOUT)
        except psycopg.errors.UniqueViolation:
            rows = await link.execute(sql.RESCUE, {**params, "keep_locks": False}, timeout=LONG_QUERY_TIMEOUT)
        for row in rows:
            logger.warning(
                "job of a dead worker " + ("put back in its queue" if row["will_retry"] else "failed: out of attempts"),
                extra={"event": "job_rescued", "job_id": row["job_id"], "queue": row["queue_name"]},
            )

    async def _compaction_duty(self, handle: DutyHandle) -> None:
        while True:
            if self.elector.is_leader():
                await self.links["control"].execute(sql.COMPACT_COUNTS, timeout=LONG_QUERY_TIMEOUT)
                handle.healthy()
            else:
                handle.standby()
            await asyncio.sleep(MAINTENANCE_PERIOD)

    async def _abort_duty(self, handle: DutyHandle) -> None:
        while True:
            if self._jobs and self.worker_id is not None:
                rows = await self.links["control"].execute(
                    sql.ABORT_REQUESTED, {"worker_id": self.worker_id}, timeout=STATEMENT_TIMEOUT
                )
                for row in rows:
                    self.runner.abort(row["id"])
            handle.healthy()
            await asyncio.sleep(ABORT_POLL_PERIOD)

    # --- Shutdown -------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        # The fetch loop ends by itself once stopping: cancelled mid-claim, it could leave
        # jobs claimed and never started (they would wait for the rescue).
        await self.supervisor.wait("fetch", timeout=STATEMENT_TIMEOUT)
        await self.supervisor.stop("fetch", "listener", "leader", "scheduler", "rescue", "compaction")
        with contextlib.suppress(Exception):
            await self.elector.resign()
        consumers_done = asyncio.ensure_future(self._consumers_shutdown())
        if self._jobs:
            ids = ", ".join(str(claim.job.id) for claim in self._jobs.values())
            logger.info(f"waiting for running jobs to finish: {ids}", extra={"event": "worker_draining"})
            await asyncio.wait(list(self._jobs), timeout=self.config.shutdown_timeout)
        await consumers_done
        running = [(task, claim) for task, claim in self._jobs.items() if not task.done()]
        abandoned = [claim for _, claim in running]
        for claim in abandoned:
            # Abandoned: whatever its run ends with now (a cancellation, an abort) is no outcome.
            # The job goes back to its queue below, or to the rescue's once this worker is gone.
            self._held.discard(claim.token)
        ends: list[str] = []  # what became of each job the shutdown reached
        reachable = True
        for task, claim in running:
            self.runner.abandon(claim.job.id or 0)  # an async task is cancelled; a sync one cannot be
            if reachable:
                reachable = await self._requeue(claim, ends)
            task.cancel()  # its outcome is not written: the job is back in its queue, or will be
        with contextlib.suppress(Exception):
            await self.completer.flush_all(timeout=self.config.query_timeout * 2)
        await self.supervisor.stop()
        with contextlib.suppress(Exception):
            if self.worker_id is not None and not self.completer.pending:
                await self.links["heartbeat"].execute(
                    sql.UNREGISTER, {"worker_id": self.worker_id}, timeout=self.config.query_timeout
                )
        for link in self.links.values():
            await link.drop()
        logger.info(
            "worker stopped" + _abandoned_summary(abandoned=len(abandoned), ends=ends),
            extra={"event": "worker_stopped", "worker_id": self.worker_id, "exit_code": self.exit_code},
        )
        # Threads still running put-back jobs cannot be stopped: do not wait for them.
        self.executor.shutdown(wait=not abandoned, cancel_futures=True)
        self.abandoned = abandoned

    async def _consumers_shutdown(self) -> None:
        """Each row queue's consumer stops claiming and settles what it holds, within the shutdown timeout."""
        results = await asyncio.gather(
            *(consumer.shutdown(timeout=self.config.shutdown_timeout) for consumer in self.consumers.values()),
            return_exceptions=True,
        )
        for name, result in zip(self.consumers, results, strict=True):
            if isinstance(result, BaseException):
                logger.error(
                    f"the {name} queue's consumer did not shut down cleanly: {type(result).__name__}: {result}",
                    extra={"event": "consumer_shutdown_failed", "queue": name},
                )

    async def _requeue(self, claim: Claim, ends: list[str]) -> bool:
        """Put a job still running at the shutdown timeout back in its queue (or fail it, out of
        attempts), noting in ``ends`` what became of it. If that cannot be written, the rescue
        does it once this worker is silent; False then, so that the other jobs do not each wait
        for an unreachable database."""
        message = f"still running {self.config.shutdown_timeout:g} s after shutdown began"
        try:
            rows = await self.links["complete"].execute(
                sql.REQUEUE,
                {
                    "job_id": claim.job.id,
                    "attempts": claim.attempts,
                    "worker_id": claim.worker_id,
                    "message": message,
                    "max_attempts": QUEUES[claim.job.queue].retry.max_attempts if claim.job.queue in QUEUES else 1,
                },
                timeout=self.config.query_timeout,
            )
        except Exception as exc:  # shutting down: the rescue will put it back
            logger.error(
                f"job still running at shutdown timeout not put back ({type(exc).__name__}: {exc}); "
                "the rescue will, once this worker has stopped",
                extra={**log_fields(claim.job), "event": "job_requeue_failed"},
            )
            return False
        ends.append((PUT_BACK if rows[0]["will_retry"] else FAILED) if rows else GONE)
        if rows:
            logger.warning(
                "job put back: still running at shutdown timeout"
                if rows[0]["will_retry"]
                else "job failed: still running at shutdown timeout, and out of attempts or its abort was requested",
                extra={**log_fields(claim.job), "event": "job_requeued", "will_retry": rows[0]["will_retry"]},
            )
        return True


def _abandoned_summary(*, abandoned: int, ends: list[str]) -> str:
    """How the jobs still running at the shutdown timeout were left, each counted for what it became."""
    counts = {
        "put back": ends.count(PUT_BACK),
        "failed (out of attempts, or aborted)": ends.count(FAILED),
        "left for the rescue (the database could not be reached)": abandoned - len(ends),
    }
    parts = [f"{count} job(s) {what}" for what, count in counts.items() if count]
    return "; " + ", ".join(parts) if parts else ""
