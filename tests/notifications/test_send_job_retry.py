"""Retrying a failed send job sends the email again (the queue layer's jobs_retried signal)."""

from __future__ import annotations

import pytest
from django.db import connection

from kgc import jobs
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
