"""Retrying a failed send job sends the email again (the queue layer's jobs_retried signal)."""

from __future__ import annotations

import pytest
from django.db import connection

from kgc.queue import jobs
from notifications.models import Notification, OutboundEmail
from notifications.services import notifications_deliver
from tests.notifications.test_notifications_deliver import draft

pytestmark = pytest.mark.django_db


def test_retrying_a_failed_send_job_puts_its_email_back_in_the_queue(tenant, member_of):
    notifications_deliver(tenant=tenant, drafts=[draft(member_of(tenant, "admin"))])
    email = OutboundEmail.objects.get()
    OutboundEmail.objects.filter(pk=email.pk).update(status="failed", last_error="550 mailbox unavailable")
    Notification.objects.update(email_status="failed")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET status = 'failed' RETURNING id")
        [(job_id,)] = cursor.fetchall()

    jobs.retry_job(job_id)

    email.refresh_from_db()
    assert (email.status, email.last_error) == ("queued", "")
    assert Notification.objects.get().email_status == "queued"


def status_of(job_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", [job_id])
        return cursor.fetchone()[0]


def test_bulk_retry_leaves_out_send_jobs_whose_delivery_is_unknown(failed_send_job):
    unknown_job, unknown_email = failed_send_job(delivery_unknown=True)
    other_job, other_email = failed_send_job(delivery_unknown=False)

    assert jobs.retry_failed("email") == 1

    assert (status_of(unknown_job), status_of(other_job)) == ("failed", "todo")
    unknown_email.refresh_from_db()
    other_email.refresh_from_db()
    assert (unknown_email.status, unknown_email.delivery_unknown) == ("failed", True)
    assert other_email.status == "queued"


def test_bulk_retry_counts_the_send_jobs_it_left_out(failed_send_job):
    failed_send_job(delivery_unknown=True)
    failed_send_job(delivery_unknown=False)
    assert jobs.failed_held_count("email") == {"delivery_unknown": 1}
    assert jobs.failed_jobs_retry("email") == jobs.BulkRetryResult(retried=1, held={"delivery_unknown": 1})


def test_a_failed_send_job_whose_email_is_still_sending_is_left_out_too(failed_send_job):
    # The worker of the job's last attempt died mid-send: nothing resolved the row yet.
    job_id, email = failed_send_job(delivery_unknown=False)
    OutboundEmail.objects.filter(pk=email.pk).update(status="sending")
    assert jobs.retry_failed() == 0
    assert status_of(job_id) == "failed"


def test_retrying_that_one_send_job_sends_its_email_again(failed_send_job):
    job_id, email = failed_send_job(delivery_unknown=True)
    jobs.retry_job(job_id)
    email.refresh_from_db()
    assert status_of(job_id) == "todo"
    assert (email.status, email.delivery_unknown, email.last_error) == ("queued", False, "")
