"""The scheduler: one periodic job per cron tick, run by the leader only.

Which ticks are due is a pure function (``ticks_due``) of the schedules, the last tick
each one got and the time. The leader loads the last ticks from the database when it
takes over, so a tick missed while leadership changed hands (or while no worker was
up) is caught up, within ``KGC_SCHEDULER_CATCH_UP_HOURS``; an older one is skipped, and
recorded as missed (``kgc_schedulertick.missed``, which the health checks report) until
the schedule's next tick. The current tick always runs. procrastinate's
``procrastinate_periodic_defers`` keeps one row per tick under a unique key, so even two
schedulers could not defer one tick twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from croniter import croniter
from procrastinate import App
from psycopg.types.json import Jsonb

from kgc.queue import sql, tracing
from kgc.queue.config import SCHEDULER_PERIOD
from kgc.queue.db import Link
from kgc.queue.supervisor import DutyHandle

logger = logging.getLogger("kgc.worker")

ScheduleKey = tuple[str, str]  # (task name, periodic id)
# At most this many missed ticks of one schedule are caught up at once (the latest ones).
CATCH_UP_MAX = 24
# A tick less than this old is the current one, never a missed one: it runs whatever
# KGC_SCHEDULER_CATCH_UP_HOURS says (0 turns catching up off, not the schedules). The
# scheduler wakes for each tick within a fraction of a second; this covers a slow database
# or a leader taking over.
ON_TIME = 60.0


def _schedule_walk(cron: str, *, since: int | None, now: float, catch_up: float) -> tuple[list[int], int | None]:
    """One schedule's ticks due now (newest first), and the newest one it will never get
    (older than the catch-up window, or past the cap), if any."""
    window = max(catch_up, ON_TIME)
    # Walking back from now: get_prev excludes its start, so start just after now.
    iterator = croniter(cron, int(now) + 1)
    ticks: list[int] = []
    while True:
        tick = int(iterator.get_prev(float))
        if since is not None and tick <= since:
            return ticks, None
        if now - tick > window or len(ticks) >= (1 if since is None else CATCH_UP_MAX):
            # A schedule that never got a tick is new: its older ticks were never due.
            return ticks, None if since is None else tick
        ticks.append(tick)


def ticks_due(
    *, crons: Mapping[ScheduleKey, str], last: Mapping[ScheduleKey, int], now: float, catch_up: float
) -> list[tuple[ScheduleKey, int]]:
    """The (schedule, tick timestamp) pairs to defer now, oldest first.

    A schedule that got a tick before gets every tick since, up to now; one that never
    did gets only its latest tick. Either way, ticks older than ``catch_up`` seconds are
    skipped (but never one less than ``ON_TIME`` old), and at most ``CATCH_UP_MAX`` per
    schedule.
    """
    due: list[tuple[ScheduleKey, int]] = []
    for key, cron in crons.items():
        ticks, _ = _schedule_walk(cron, since=last.get(key), now=now, catch_up=catch_up)
        due.extend((key, tick) for tick in ticks)
    return sorted(due, key=lambda item: item[1])


def ticks_missed(
    *, crons: Mapping[ScheduleKey, str], last: Mapping[ScheduleKey, int], now: float, catch_up: float
) -> dict[ScheduleKey, int]:
    """Each schedule's newest tick that ``ticks_due`` skips for good (too old, or past the cap),
    for the schedules that skip one."""
    missed = {}
    for key, cron in crons.items():
        _, tick = _schedule_walk(cron, since=last.get(key), now=now, catch_up=catch_up)
        if tick is not None:
            missed[key] = tick
    return missed


def schedule_label(key: ScheduleKey) -> str:
    """How health checks and logs name a schedule: ``compliance.refresh_all (nightly)``."""
    return f"{key[0]} ({key[1]})"


def next_tick_in(crons: Mapping[ScheduleKey, str], *, now: float) -> float:
    """Seconds until the next tick of any schedule."""
    if not crons:
        return SCHEDULER_PERIOD
    return min(croniter(cron, now).get_next(float) for cron in crons.values()) - now


@dataclass
class Scheduler:
    app: App
    link: Link
    is_leader: Callable[[], bool]
    worker_id: Callable[[], int | None]
    catch_up: float
    timeout: float

    def crons(self) -> dict[ScheduleKey, str]:
        return {key: periodic.cron for key, periodic in self.app.periodic_registry.periodic_tasks.items()}

    async def duty(self, handle: DutyHandle) -> None:
        last: dict[ScheduleKey, int] | None = None
        while True:
            if not self.is_leader():
                handle.standby()
                last = None  # a future term starts from what the database says
                await asyncio.sleep(min(1.0, SCHEDULER_PERIOD))
                continue
            if last is None:
                last = await self._last_ticks()
            now = time.time()
            crons = self.crons()
            missed = ticks_missed(crons=crons, last=last, now=now, catch_up=self.catch_up)
            ran: set[ScheduleKey] = set()
            for key, tick in ticks_due(crons=crons, last=last, now=now, catch_up=self.catch_up):
                await self._defer(key, tick)
                last[key] = tick
                ran.add(key)
            for key, tick in missed.items():
                last[key] = max(last.get(key, tick), tick)  # noticed once, not at every round
            await self._record(crons, ran=ran, missed={key: tick for key, tick in missed.items() if key not in ran})
            handle.healthy()
            await asyncio.sleep(min(next_tick_in(self.crons(), now=time.time()) + 0.05, SCHEDULER_PERIOD))

    async def _record(
        self, crons: Mapping[ScheduleKey, str], *, ran: set[ScheduleKey], missed: dict[ScheduleKey, int]
    ) -> None:
        """Record this check, and the schedules whose latest tick was skipped for good: each stays
        recorded (health reports it) until a later tick of its schedule is deferred."""
        for key, tick in missed.items():
            logger.warning(
                f"{schedule_label(key)}: the tick at {datetime.fromtimestamp(tick, tz=UTC):%Y-%m-%d %H:%M} UTC was "
                f"missed and is skipped: older than the catch-up window (KGC_SCHEDULER_CATCH_UP_HOURS) or than "
                f"the {CATCH_UP_MAX} latest ticks; the schedule goes on from its next tick",
                extra={"event": "tick_missed", "task": key[0], "tick": tick},
            )
        keep = [schedule_label(key) for key in crons if key not in ran and key not in missed]
        await self.link.execute(
            sql.SCHEDULER_TICKED,
            {
                "worker_id": self.worker_id(),
                "missed": Jsonb({schedule_label(key): tick for key, tick in missed.items()}),
                "keep": keep,
            },
            timeout=self.timeout,
        )

    async def _last_ticks(self) -> dict[ScheduleKey, int]:
        rows = await self.link.execute(sql.LAST_DEFERS, timeout=self.timeout)
        return {(row["task_name"], row["periodic_id"]): int(row["defer_timestamp"]) for row in rows}

    async def _defer(self, key: ScheduleKey, tick: int) -> None:
        periodic = self.app.periodic_registry.periodic_tasks[key]
        if not tracing.enabled():
            await self._defer_tick(periodic, tick, carrier=None)
            return
        # Each tick starts a trace of its own: the tick's job, and whatever its run fans out.
        with tracing.defer_span(
            queue=periodic.task.queue,
            task_name=periodic.task.name,
            **{"messaging.procrastinate.periodic_id": periodic.periodic_id, "kgc.schedule.tick": tick},
        ) as deferral:
            job_id = await self._defer_tick(periodic, tick, carrier=deferral.carrier)
            if job_id is not None:
                deferral.deferred(job_id, created=True)

    async def _defer_tick(self, periodic: Any, tick: int, *, carrier: dict[str, str] | None) -> int | None:
        options: dict[str, Any] = dict(periodic.configure_kwargs)
        options["task_kwargs"] = {**(options.get("task_kwargs") or {}), "timestamp": tick}
        if carrier is not None:
            options["task_kwargs"][tracing.TRACE_CONTEXT_KEY] = carrier
        job = periodic.task.configure(**options).job
        try:
            rows = await self._defer_statement(job, periodic.periodic_id, tick)
        except psycopg.errors.UniqueViolation:
            # The task's queueing lock: its previous job still waits, so this tick adds none
            # (as procrastinate's own scheduler does). The tick is done; the next one will try.
            logger.info(
                f"{job.task_name}: tick at {tick} skipped, a job under its queueing lock still waits",
                extra={"event": "tick_skipped", "task": job.task_name, "tick": tick},
            )
            return None
        job_id = rows[0]["id"] if rows else None
        if job_id is not None:
            logger.info(
                f"scheduled {job.task_name} for the tick at {tick}",
                extra={"event": "tick_deferred", "task": job.task_name, "job_id": job_id, "tick": tick},
            )
        return job_id

    async def _defer_statement(self, job: Any, periodic_id: str, tick: int) -> list[dict[str, Any]]:
        return await self.link.execute(
            sql.DEFER_TICK,
            {
                "queue": job.queue,
                "lock": job.lock,
                "queueing_lock": job.queueing_lock,
                "task_name": job.task_name,
                "priority": job.priority,
                "periodic_id": periodic_id,
                "defer_timestamp": tick,
                "args": Jsonb(job.task_kwargs),
            },
            timeout=self.timeout,
        )
