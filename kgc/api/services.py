"""What the JSON API needs beyond ``kgc/job_helpers.py``: whether a refresh is new, and a job's name."""

from __future__ import annotations

from typing import TypedDict

from procrastinate.contrib.django.models import ProcrastinateJob

from compliance import services as compliance_services
from compliance.selectors import tenant_get
from kgc import job_helpers, jobs


class EnqueuedJob(TypedDict):
    id: int
    queue: str
    name: str


def compliance_refresh_enqueue(
    *, tenant_id: int | None, triggered_by: str = "manual", priority: int | None = None
) -> tuple[int, bool]:
    """``job_helpers.enqueue_compliance_refresh``, also saying whether the job is new.

    Same rules and same job; ``created`` is False when the tenant already had a refresh
    waiting and its id is returned (the API answers 200 instead of 201 then).
    """
    if tenant_id is None:
        # No queueing lock on the fan-out: every call defers a new job.
        return job_helpers.enqueue_compliance_refresh(None, triggered_by=triggered_by, priority=priority), True
    limit = job_helpers.TRIGGERED_BY_MAX
    if not isinstance(triggered_by, str) or not triggered_by.strip() or len(triggered_by) > limit:
        raise job_helpers.InvalidTrigger(f"triggered_by must be a non-empty string of at most {limit} characters")
    jobs.priority_to_stored(priority)  # validate before touching the database
    tenant = tenant_get(tenant_id)
    return jobs.job_defer(
        task_name=compliance_services.REFRESH_TASK,
        kwargs={"tenant_id": tenant.pk, "triggered_by": triggered_by},
        priority=priority,
        queueing_lock=compliance_services.REFRESH_LOCK.format(tenant_id=tenant.pk),
    )


def job_describe(job_id: int) -> EnqueuedJob:
    """A job's id, queue and task name (the seed's job had an id, a queue and a name)."""
    queue, name = ProcrastinateJob.objects.values_list("queue_name", "task_name").get(pk=job_id)
    return {"id": job_id, "queue": queue, "name": name}
