"""A job as the jobs screens show it: its row with times, last error and pause flag; its state;
its times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from procrastinate.contrib.django.models import ProcrastinateEvent

from kgc.console import display
from kgc.queue.models import JobFailure, QueuePause

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
    )


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
    """A time in a column: short (hours and minutes today, the date otherwise), exact on hover."""
    if at is None:
        return "-"
    at = timezone.localtime(at)
    short = f"{at:%H:%M:%S}" if at.date() == timezone.localdate() else f"{at:%Y-%m-%d %H:%M}"
    return format_html('<span class="kgc-nowrap" title="{} UTC">{}</span>', f"{at:%Y-%m-%d %H:%M:%S.%f}"[:-3], short)
