"""What the JSON API needs beyond ``kgc/job_helpers.py``: a job's queue and name."""

from __future__ import annotations

from typing import TypedDict

from procrastinate.contrib.django.models import ProcrastinateJob


class EnqueuedJob(TypedDict):
    id: int
    queue: str
    name: str


def job_describe(job_id: int) -> EnqueuedJob:
    """A job's id, queue and task name (the seed's job had an id, a queue and a name)."""
    queue, name = ProcrastinateJob.objects.values_list("queue_name", "task_name").get(pk=job_id)
    return {"id": job_id, "queue": queue, "name": name}
