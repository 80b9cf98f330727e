"""What the health endpoints, the metrics and the console read about the workers.

Everything comes from PostgreSQL: each worker reports its duties' states with its
heartbeat (``kgc_workerprocess``), the leader holds a lease (``kgc_leadership``) and the
scheduler records every check and every tick it had to skip (``kgc_schedulertick``). Any web process can therefore
tell, for the whole cluster, whether each product queue has a live worker, whether the
scheduler is on time, and whether a duty has been failing for too long.
``readiness_verdicts`` is a pure function of those readings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from kgc.queue.config import SCHEDULER_PERIOD

OK = "ok"


@dataclass(frozen=True)
class DutyReport:
    name: str
    state: str
    restarts: int = 0
    failing_since: datetime | None = None
    last_error: str = ""

    def failing_for(self, now: datetime) -> timedelta | None:
        if self.state != "failing" or self.failing_since is None:
            return None
        return max(now - self.failing_since, timedelta(0))


@dataclass(frozen=True)
class WorkerReport:
    worker_id: int
    last_heartbeat: datetime
    host: str = ""
    pid: int | None = None
    queues: tuple[str, ...] = ()
    concurrency: dict[str, int] = field(default_factory=dict)
    started_at: datetime | None = None
    duties: tuple[DutyReport, ...] = ()
    running_jobs: int = 0

    def heartbeat_age(self, now: datetime) -> timedelta:
        return max(now - self.last_heartbeat, timedelta(0))

    def is_alive(self, now: datetime, *, dead_after: timedelta) -> bool:
        return self.heartbeat_age(now) <= dead_after

    @property
    def label(self) -> str:
        where = f"{self.host}:{self.pid}" if self.host else "unknown process"
        return f"worker {self.worker_id} ({where})"


@dataclass(frozen=True)
class LeaderReport:
    worker_id: int
    elected_at: datetime
    expires_at: datetime


def worker_dead_after() -> timedelta:
    """How long a worker may be silent and still count as alive (KGC_WORKER_DEAD_AFTER): the
    cutoff at which the leader declares it dead, so everyone agrees on who is alive."""
    from django.conf import settings

    return timedelta(seconds=settings.KGC_WORKER_DEAD_AFTER)


@dataclass(frozen=True)
class ClusterReport:
    workers: tuple[WorkerReport, ...]
    leader: LeaderReport | None
    scheduler_ticked_at: datetime | None
    # The database's clock when read: heartbeats and ticks are stamped by it, so ages
    # measured against it do not depend on this machine's clock.
    now: datetime
    # Schedules whose latest tick the scheduler skipped for good, with that tick's Unix time.
    scheduler_missed: dict[str, int] = field(default_factory=dict)

    def alive(self) -> list[WorkerReport]:
        return [worker for worker in self.workers if worker.is_alive(self.now, dead_after=worker_dead_after())]


def _duties(raw: dict[str, Any] | None, reported_at: datetime | None) -> tuple[DutyReport, ...]:
    """The duties a worker reported; a failure's start is placed on the database's clock (the
    report's time less how long it had been failing), so the worker's own clock never matters."""
    duties = []
    for name, state in sorted((raw or {}).items()):
        since = state.get("failing_since")
        failing_for = state.get("failing_for")
        if failing_for is not None and reported_at is not None:
            since = (reported_at - timedelta(seconds=float(failing_for))).isoformat()
        duties.append(
            DutyReport(
                name=name,
                state=str(state.get("state", "")),
                restarts=int(state.get("restarts") or 0),
                failing_since=datetime.fromisoformat(since) if since else None,
                last_error=str(state.get("last_error") or ""),
            )
        )
    return tuple(duties)


WORKERS_SQL = """
SELECT worker.id, worker.last_heartbeat, process.host, process.pid, process.queues, process.concurrency,
       process.started_at, process.duties, process.reported_at,
       (SELECT count(*) FROM procrastinate_jobs AS job WHERE job.worker_id = worker.id AND job.status = 'doing')
  FROM procrastinate_workers AS worker
  LEFT JOIN kgc_workerprocess AS process ON process.worker_id = worker.id
 ORDER BY worker.id
 LIMIT %(limit)s
"""


def cluster_read(*, limit: int = 500) -> ClusterReport:
    """Every registered worker (up to ``limit``), the lease and the scheduler's last check; three short queries."""
    with connection.cursor() as cursor:
        cursor.execute(WORKERS_SQL, {"limit": limit})
        workers = tuple(
            WorkerReport(
                worker_id=row[0],
                last_heartbeat=row[1],
                host=row[2] or "",
                pid=row[3],
                queues=tuple(row[4] or ()),
                concurrency=jsonb_value(row[5]) or {},
                started_at=row[6],
                duties=_duties(jsonb_value(row[7]), row[8]),
                running_jobs=row[9],
            )
            for row in cursor.fetchall()
        )
        cursor.execute("SELECT worker_id, elected_at, expires_at FROM kgc_leadership WHERE name = 'cluster'")
        lease = cursor.fetchone()
        cursor.execute(
            "SELECT tick.ticked_at, tick.missed, statement_timestamp()"
            "  FROM (SELECT 1) AS one LEFT JOIN kgc_schedulertick AS tick ON tick.name = 'scheduler'"
        )
        ticked_at, missed, now = cursor.fetchone()
    leader = LeaderReport(worker_id=lease[0], elected_at=lease[1], expires_at=lease[2]) if lease else None
    return ClusterReport(
        workers=workers,
        leader=leader,
        scheduler_ticked_at=ticked_at,
        now=now,
        scheduler_missed={str(key): int(tick) for key, tick in (jsonb_value(missed) or {}).items()},
    )


def jsonb_value(value: Any) -> Any:
    """A jsonb column as read through a raw cursor (Django's connection leaves it as text)."""
    return json.loads(value) if isinstance(value, str) else value


def scheduler_late_after(*, leader_ttl: float) -> timedelta:
    """How long the scheduler may go without a check before /readyz says so: its period, plus
    a leader's replacement (its lease and one election round), plus slack for restarts."""
    return timedelta(seconds=SCHEDULER_PERIOD + 1.2 * leader_ttl + 30)


def readiness_verdicts(
    cluster: ClusterReport,
    *,
    now: datetime,
    product_queues: Sequence[str],
    dead_after: timedelta,
    duty_failing_after: timedelta,
    scheduler_late_after: timedelta,
) -> dict[str, str]:
    """The workers', the scheduler's and the duties' verdicts: "ok", or what is wrong."""
    alive = [worker for worker in cluster.workers if worker.is_alive(now, dead_after=dead_after)]
    return {
        "workers": _workers_verdict(alive, product_queues, dead_after),
        "scheduler": _scheduler_verdict(cluster, now, scheduler_late_after),
        "duties": _duties_verdict(alive, now, duty_failing_after),
    }


def _workers_verdict(alive: Sequence[WorkerReport], product_queues: Iterable[str], dead_after: timedelta) -> str:
    if not alive:
        return f"no worker heartbeat in the last {dead_after.total_seconds():g} s"
    served = {queue for worker in alive for queue in worker.queues}
    unserved = [queue for queue in product_queues if queue not in served]
    return f"no live worker serves {', '.join(unserved)}" if unserved else OK


def _scheduler_verdict(cluster: ClusterReport, now: datetime, late_after: timedelta) -> str:
    ticked = cluster.scheduler_ticked_at
    if ticked is None:
        return "the scheduler has never run"
    age = now - ticked
    if age > late_after:
        leader = f"leader: worker {cluster.leader.worker_id}" if cluster.leader else "no leader"
        return f"the scheduler has not run for {age.total_seconds():.0f} s ({leader})"
    if cluster.scheduler_missed:
        missed = ", ".join(
            f"{schedule} at {datetime.fromtimestamp(tick, tz=UTC):%Y-%m-%d %H:%M} UTC"
            for schedule, tick in sorted(cluster.scheduler_missed.items())
        )
        return f"the scheduler skipped a tick too late to catch up (KGC_SCHEDULER_CATCH_UP_HOURS): {missed}"
    return OK


def _duties_verdict(alive: Sequence[WorkerReport], now: datetime, failing_after: timedelta) -> str:
    problems = []
    for worker in alive:
        for duty in worker.duties:
            failing_for = duty.failing_for(now)
            if failing_for is not None and failing_for > failing_after:
                problems.append(
                    f"{worker.label}: {duty.name} failing for {failing_for.total_seconds():.0f} s"
                    + (f" ({duty.last_error})" if duty.last_error else "")
                )
    return "; ".join(problems) if problems else OK


def worker_verdicts(
    cluster: ClusterReport,
    *,
    host: str,
    local_pids: Iterable[int],
    now: datetime,
    dead_after: timedelta,
    duty_failing_after: timedelta,
) -> dict[str, str]:
    """The verdict on each worker process of this machine (or container): registered under
    ``host`` with a pid running here, its own heartbeat fresh (within ``dead_after``, the rule
    everyone applies), and none of its duties failing for longer than ``duty_failing_after``.
    No such worker is a verdict of its own."""
    running = set(local_pids)
    mine = [worker for worker in cluster.workers if worker.host == host and worker.pid in running]
    if not mine:
        return {"workers": f"no worker process of this host ({host}) is registered"}
    verdicts = {}
    for worker in mine:
        age = worker.heartbeat_age(now)
        if age > dead_after:
            verdicts[worker.label] = f"no heartbeat for {age.total_seconds():.0f} s"
            continue
        failing = [
            f"{duty.name} failing for {failing_for.total_seconds():.0f} s"
            + (f" ({duty.last_error})" if duty.last_error else "")
            for duty in worker.duties
            if (failing_for := duty.failing_for(now)) is not None and failing_for > duty_failing_after
        ]
        verdicts[worker.label] = "; ".join(failing) if failing else OK
    return verdicts
