"""A job as the jobs screens show it: its row with times, last error and pause flag; its state;
its times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from procrastinate.contrib.django.models import ProcrastinateEvent

from compliance.models import Tenant
from kgc.console import display
from kgc.queue.models import JobFailure, QueuePause, WorkerProcess

FINISHED_EVENTS = ["succeeded", "failed", "cancelled", "aborted"]


def _events_at(types: list[str], *, first: bool) -> Subquery:
    events = ProcrastinateEvent.objects.filter(job_id=OuterRef("pk"), type__in=types)
    return Subquery(events.order_by("at" if first else "-at").values("at")[:1])


def jobs_annotated(queryset: QuerySet) -> QuerySet:
    """Each job with its times, last error and its queue's pause flag: a few index lookups per
    job (events by job, failures by job). For a page of rows, never for a whole table."""
    failures = JobFailure.objects.filter(job_id=OuterRef("pk")).order_by("-failed_at", "-id")
    return queryset.annotate(
        queued_at=_events_at(["deferred"], first=True),
        started_at=_events_at(["started"], first=False),
        finished_at=_events_at(FINISHED_EVENTS, first=False),
        last_error_type=Subquery(failures.values("exception_type")[:1]),
        last_error_message=Subquery(failures.values("message")[:1]),
        queue_paused=Exists(QueuePause.objects.filter(queue_name=OuterRef("queue_name"))),
        # The worker of its latest attempt, kept after it ended (kgc/queue/sql.py FINISH).
        ran_by=RawSQL("procrastinate_jobs.kgc_worker_id", ()),
    )


@dataclass(frozen=True)
class TenantShown:
    id: int
    name: str | None  # None: no such tenant any more
    url: str | None


@dataclass(frozen=True)
class WorkerShown:
    id: int
    host: str | None  # None: the worker is no longer registered (stopped, or declared dead)
    pid: int | None


def jobs_described(jobs: Iterable[Any]) -> None:
    """Give each job its tenant (``tenant_shown``: by name, linked) and the worker that runs or
    ran it (``worker_shown``): two queries for a page of jobs."""
    listed = list(jobs)
    tenant_ids = {tenant_id for job in listed if isinstance(tenant_id := (job.args or {}).get("tenant_id"), int)}
    names = dict(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", "name")) if tenant_ids else {}
    worker_ids = {worker_id for job in listed if (worker_id := _worker_of(job)) is not None}
    processes = {
        process.worker_id: process
        for process in WorkerProcess.objects.filter(worker_id__in=worker_ids).only("worker_id", "host", "pid")
    }
    for job in listed:
        tenant_id = (job.args or {}).get("tenant_id")
        job.tenant_shown = (
            TenantShown(
                id=tenant_id,
                name=names.get(tenant_id),
                url=reverse("admin:compliance_tenant_change", args=[tenant_id]) if tenant_id in names else None,
            )
            if isinstance(tenant_id, int)
            else None
        )
        worker_id = _worker_of(job)
        process = processes.get(worker_id) if worker_id is not None else None
        job.worker_shown = (
            WorkerShown(id=worker_id, host=process.host if process else None, pid=process.pid if process else None)
            if worker_id is not None
            else None
        )


def _worker_of(job: Any) -> int | None:
    """The running attempt's worker, else the latest attempt's."""
    return job.worker_id if job.status == "doing" and job.worker_id else getattr(job, "ran_by", None)


def tenant_cell(tenant: TenantShown | None, *, width: int) -> SafeString | str:
    if tenant is None:
        return "-"
    if tenant.name is None:
        return format_html('<span class="kgc-muted" title="no tenant has this id any more">{} (gone)</span>', tenant.id)
    return format_html(
        '<a href="{}" title="{} (tenant {})">{}</a>',
        tenant.url,
        tenant.name,
        tenant.id,
        display.text_shorten(tenant.name, width),
    )


def worker_text(worker: WorkerShown | None) -> str:
    if worker is None:
        return "-"
    if worker.host is None:
        return f"worker {worker.id} (no longer running)"
    return f"worker {worker.id} on {worker.host}, pid {worker.pid}"


def _times(job: Any) -> display.JobTimes:
    return display.job_times(
        queued_at=getattr(job, "queued_at", None),
        started_at=getattr(job, "started_at", None),
        finished_at=getattr(job, "finished_at", None),
    )


def _state_of(job: Any) -> str:
    return display.job_state(
        status=job.status,
        scheduled_at=job.scheduled_at,
        queue_paused=bool(getattr(job, "queue_paused", False)),
        now=timezone.now(),
    )


def _moment(at: datetime | None) -> SafeString | str:
    """A time in a column, with its day ("5 Dec 14:03:07"), exact on hover."""
    if at is None:
        return "-"
    at = timezone.localtime(at)
    short = display.moment_text(at, now=timezone.localtime())
    return format_html('<span class="kgc-nowrap" title="{} UTC">{}</span>', f"{at:%Y-%m-%d %H:%M:%S.%f}"[:-3], short)
