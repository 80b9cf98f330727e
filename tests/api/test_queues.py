"""The queue routes: counts in BullMQ's shape, pause, resume and cleanup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateEvent, ProcrastinateJob

from kgc.queue import jobs
from kgc.queue.models import QueuePause

COUNTS = {"waiting": 0, "active": 0, "delayed": 0, "completed": 0, "failed": 0, "paused": 0, "cancelled": 0}


def test_all_queue_stats_are_keyed_by_the_four_queue_names(api):
    response = api.get("queues")
    assert response.status_code == 200
    assert response.json() == {
        name: {**COUNTS, "isPaused": False}
        for name in ("compliance", "expiry-notification", "filing-reminder", "email")
    }


def test_queue_stats_count_a_waiting_job(api, tenant):
    api.post("jobs/expiry-check", {"tenantId": tenant.pk})
    response = api.get("queues/expiry-notification")
    assert response.status_code == 200
    assert response.json() == {**COUNTS, "waiting": 1, "isPaused": False}


def test_queue_stats_say_whether_the_queue_is_paused(api, tenant):
    api.post("jobs/expiry-check", {"tenantId": tenant.pk})
    jobs.pause_queue("expiry-notification")
    response = api.get("queues/expiry-notification")
    assert response.json() == {**COUNTS, "paused": 1, "isPaused": True}


def test_pause_pauses_the_queue(api):
    response = api.post("queues/email/pause")
    assert response.status_code == 200
    assert response.json() == {"queue": "email", "paused": True, "changed": True}
    assert QueuePause.objects.get().queue_name == "email"


def test_pause_of_a_paused_queue_changes_nothing(api):
    api.post("queues/email/pause")
    response = api.post("queues/email/pause")
    assert response.json() == {"queue": "email", "paused": True, "changed": False}


def test_resume_lets_the_queue_run(api):
    jobs.pause_queue("compliance")
    response = api.post("queues/compliance/resume", b"")
    assert response.status_code == 200
    assert response.json() == {"queue": "compliance", "paused": False, "changed": True}
    assert not QueuePause.objects.exists()


def test_paused_queue_counts_its_waiting_jobs_as_paused(api, tenant):
    api.post("jobs/filing-reminder", {"tenantId": tenant.pk})
    api.post("queues/filing-reminder/pause")
    assert api.get("queues/filing-reminder").json() == {**COUNTS, "paused": 1, "isPaused": True}


def _finished_job(status: str, *, ago: timedelta = timedelta(0)) -> int:
    job_id = jobs.job_defer(task_name="notifications.send_email", kwargs={"outbound_email_id": 1})[0]
    # Through "doing", as a worker does, so that the trigger records the finishing event.
    ProcrastinateJob.objects.filter(id=job_id).update(status="doing")
    ProcrastinateJob.objects.filter(id=job_id).update(status=status)
    # The event's time is the database's now(): move it back to when the job finished.
    ProcrastinateEvent.objects.filter(job_id=job_id).update(at=timezone.now() - ago)
    return job_id


@pytest.mark.parametrize(
    ("body", "completed_left", "failed_left"),
    [
        ({"completedAge": 60_000}, False, True),
        ({"failedAge": 60_000}, True, False),
        ({"completedAge": 60_000, "failedAge": 60_000}, False, False),
        ({}, True, True),
    ],
)
def test_cleanup_deletes_jobs_finished_longer_ago_than_the_ages(api, body, completed_left, failed_left):
    completed, failed = (
        _finished_job("succeeded", ago=timedelta(hours=1)),
        _finished_job("failed", ago=timedelta(hours=1)),
    )
    response = api.post("queues/email/cleanup", body)
    assert response.status_code == 200
    assert response.json() == {"queue": "email", "completed": int(not completed_left), "failed": int(not failed_left)}
    assert ProcrastinateJob.objects.filter(id=completed).exists() is completed_left
    assert ProcrastinateJob.objects.filter(id=failed).exists() is failed_left


def test_cleanup_keeps_jobs_younger_than_the_age(api):
    job_id = _finished_job("succeeded", ago=timedelta(minutes=30))
    response = api.post("queues/email/cleanup", {"completedAge": 3_600_000})
    assert response.json()["completed"] == 0
    assert ProcrastinateJob.objects.filter(id=job_id).exists()
