"""Retrying failed emails: the email queue's bulk retry puts failed emails back in the outbox,
and the failed send job of an earlier release, retried on its own, sends its email again."""

from __future__ import annotations

import pytest
from django.db import connection

from kgc.queue import jobs
from notifications.models import Notification, OutboundEmail

pytestmark = pytest.mark.django_db


def status_of(job_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", [job_id])
        return cursor.fetchone()[0]


def test_retrying_a_failed_send_job_puts_its_email_back_in_the_queue(failed_send_job):
    job_id, email = failed_send_job(delivery_unknown=False)
    Notification.objects.update(email_status="failed")

    jobs.retry_job(job_id)

    email.refresh_from_db()
    assert (email.status, email.last_error) == ("queued", "")
    assert Notification.objects.get().email_status == "queued"


def test_bulk_retry_of_the_email_queue_leaves_out_emails_whose_delivery_is_unknown(failed_send_job):
    unknown_job, unknown_email = failed_send_job(delivery_unknown=True)
    other_job, other_email = failed_send_job(delivery_unknown=False)

    assert jobs.retry_failed("email") == 1

    unknown_email.refresh_from_db()
    other_email.refresh_from_db()
    assert (unknown_email.status, unknown_email.delivery_unknown) == ("failed", True)
    assert other_email.status == "queued"
    # the emails are the email queue's items: the old jobs stay as they ended
    assert (status_of(unknown_job), status_of(other_job)) == ("failed", "failed")


def test_bulk_retry_counts_the_emails_it_left_out(failed_send_job):
    failed_send_job(delivery_unknown=True)
    failed_send_job(delivery_unknown=False)
    assert jobs.failed_held_count("email") == {"delivery_unknown": 1}
    assert jobs.failed_jobs_retry("email") == jobs.BulkRetryResult(retried=1, held={"delivery_unknown": 1})


def test_a_retry_of_every_queue_counts_the_emails_once(failed_send_job):
    failed_send_job(delivery_unknown=True)
    failed_send_job(delivery_unknown=False)
    assert jobs.failed_jobs_retry() == jobs.BulkRetryResult(retried=1, held={"delivery_unknown": 1})


def test_an_email_still_sending_is_not_put_back(failed_send_job):
    # The worker of its last attempt died mid-send: nothing resolved the row yet.
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
