"""Real worker processes (``manage.py runworkers --queues email``) delivering to a real SMTP server."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.job_helpers import enqueue_email
from kgc.queue import jobs
from kgc.queue.models import JobFailure
from notifications.models import OutboundEmail
from notifications.services import SEND_EMAIL_TASK
from tests.helpers import FAST_FAULTS, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEED_ALERT = {
    "clientName": "ACME Corp",
    "complianceScore": 65,
    "complianceLevel": "amber",
    "issues": ["Missing TIN Certificate", "VAT Filing Overdue"],
    "recommendations": ["Upload TIN Certificate", "Submit VAT Filing"],
}


def email_of(job_id: int) -> OutboundEmail:
    return OutboundEmail.objects.get(pk=ProcrastinateJob.objects.get(pk=job_id).args["outbound_email_id"])


def status_of(email: OutboundEmail) -> str:
    email.refresh_from_db()
    return email.status


def run_retry_now(job_id: int) -> None:
    """Bring a retry's backoff forward, so the test need not wait 15-30 s for it."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = %s AND status = 'todo'", [job_id])


def test_enqueued_email_arrives_at_the_smtp_server(email_workers, smtp_server, tenant):
    email_workers.start(**smtp_server.env())
    job_id = enqueue_email(
        recipient_email="ops@acme.example",
        recipient_name="Ops Team",
        subject="Compliance alert: ACME Corp",
        template="compliance-alert",
        data=SEED_ALERT,
        tenant_id=tenant.pk,
    )
    email = email_of(job_id)
    wait_for(lambda: status_of(email) == "sent", message="the email to be sent")
    [received] = smtp_server.received
    message = received.message
    assert received.rcpt_tos == ["ops@acme.example"]
    assert str(message["To"]) == "Ops Team <ops@acme.example>"
    assert message["Message-ID"] == f"<outbound-{email.pk}.{tenant.pk}@kgc-compliance.com>"
    assert (message["X-KGC-Tenant"], message["X-KGC-Notification"]) == (str(tenant.pk), "none")
    assert "- Missing TIN Certificate" in message.get_body(("plain",)).get_content()
    assert (
        "<li>VAT Filing Overdue</li>"
        in message.get_body(("html",)).get_content().replace('style="', "").replace('<li ">', "<li>")
        or ">VAT Filing Overdue</li>" in message.get_body(("html",)).get_content()
    )
    assert email.message_id == message["Message-ID"]


def test_451_is_retried_by_the_queue_and_delivered_exactly_once(email_workers, smtp_server, make_email):
    smtp_server.handler.rcpt_replies.append("451 4.3.0 Greylisted, try again later")
    email_workers.start(**smtp_server.env())
    with transaction.atomic():
        email = make_email()
        job_id, _ = jobs.job_defer(
            task_name=SEND_EMAIL_TASK, kwargs={"outbound_email_id": email.pk, "tenant_id": email.tenant_id}
        )
    failure = wait_for(lambda: JobFailure.objects.filter(job_id=job_id).first(), message="the first attempt to fail")
    assert (failure.will_retry, failure.attempt) == (True, 1)
    assert "451" in failure.message
    run_retry_now(job_id)
    wait_for(lambda: status_of(email) == "sent", message="the retry to deliver")
    wait_for(lambda: ProcrastinateJob.objects.get(pk=job_id).status == "succeeded", message="the job to succeed")
    assert len(smtp_server.received) == 1
    assert email.attempts == 2


def test_two_worker_processes_with_jobs_for_one_row_send_one_message(email_workers, smtp_server, make_email):
    smtp_server.handler.hold = threading.Event()
    email = make_email()
    kwargs = {"outbound_email_id": email.pk, "tenant_id": email.tenant_id}
    with transaction.atomic():
        job_ids = [jobs.job_defer(task_name=SEND_EMAIL_TASK, kwargs=kwargs)[0] for _ in range(2)]
    for _ in range(2):
        email_workers.start(**smtp_server.env())
    assert smtp_server.handler.in_data.wait(60), "no worker reached DATA"
    # The other job meets the send lock while the first is in DATA, and backs off.
    wait_for(lambda: JobFailure.objects.filter(job_id__in=job_ids).exists(), message="the second job to back off")
    smtp_server.handler.hold.set()
    wait_for(lambda: status_of(email) == "sent", message="the first job to record the send")
    for job_id in job_ids:
        run_retry_now(job_id)
    wait_for(
        lambda: set(ProcrastinateJob.objects.filter(pk__in=job_ids).values_list("status", flat=True)) == {"succeeded"},
        message="both jobs to finish",
    )
    assert smtp_server.handler.data_commands == 1
    assert len(smtp_server.received) == 1


def test_worker_killed_mid_send_is_not_sent_again(email_workers, smtp_server, make_email):
    """At most once: the rescued job finds the row in "sending" and fails it for an operator."""
    smtp_server.handler.hold = threading.Event()
    first = email_workers.start(**smtp_server.env(), **FAST_FAULTS)
    with transaction.atomic():
        email = make_email()
        job_id, _ = jobs.job_defer(
            task_name=SEND_EMAIL_TASK, kwargs={"outbound_email_id": email.pk, "tenant_id": email.tenant_id}
        )
    assert smtp_server.handler.in_data.wait(60), "the worker never reached DATA"
    first.kill()
    first.wait(30)
    assert status_of(email) == "sending"
    email_workers.start(**smtp_server.env(), **FAST_FAULTS)  # its crash recovery reruns the lost job
    wait_for(lambda: status_of(email) == "failed", timeout=120, message="the rescued job to fail the row")
    assert email.last_error.startswith("delivery unknown")
    assert smtp_server.handler.data_commands == 1
    wait_for(lambda: ProcrastinateJob.objects.get(pk=job_id).status == "failed", message="the job to fail")
