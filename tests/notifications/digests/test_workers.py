"""End to end: digest jobs run by real worker processes, two of them racing on the same day."""

from __future__ import annotations

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queue import jobs
from notifications.models import Digest, Notification, OutboundEmail
from tests.helpers import WorkerProcesses, wait_for
from tests.notifications.digests.conftest import document_draft, filing_draft


@pytest.fixture
def workers(transactional_db):
    processes = WorkerProcesses(KGC_SCHEDULER_CATCH_UP_HOURS="0")
    yield processes
    processes.stop_all()


@pytest.mark.slow
def test_two_worker_processes_running_the_same_days_digests_send_one_per_person(
    tenant, reader, waiting, digest_day, workers
):
    people = [reader(), reader()]
    waiting(*(draft(person) for person in people for draft in (document_draft, filing_draft)))
    job_ids = [
        jobs.job_defer(
            task_name="notifications.send_digests", kwargs={"tenant_id": tenant.pk, "as_of": str(digest_day)}
        )[0]
        for _ in range(2)
    ]
    workers.start("--queues", "expiry-notification")
    workers.start("--queues", "expiry-notification")

    finished = wait_for(
        lambda: (
            set(ProcrastinateJob.objects.filter(pk__in=job_ids).values_list("status", flat=True))
            <= {"succeeded", "failed"}
        ),
        timeout=120,
        message="both digest jobs to finish",
    )
    assert finished
    assert set(ProcrastinateJob.objects.filter(pk__in=job_ids).values_list("status", flat=True)) == {"succeeded"}
    assert sorted(Digest.objects.values_list("recipient_id", "items_count")) == sorted((p.pk, 2) for p in people)
    assert OutboundEmail.objects.filter(template="daily-digest", status="queued").count() == 2
    assert set(Notification.objects.values_list("email_status", flat=True)) == {"digested"}
