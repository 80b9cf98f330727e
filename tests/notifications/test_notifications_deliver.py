"""Each notification, and its email, is created once and only once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.models import Notification, OutboundEmail
from notifications.services import NotificationDraft, notifications_deliver


def draft(user, key="expiry:doc-1:30", **fields) -> NotificationDraft:
    return NotificationDraft(
        recipient_id=user.pk,
        recipient_email=user.email,
        recipient_name=user.get_full_name(),
        kind="document_expiry",
        title="TIN Certificate of ACME expires in 30 days",
        body="...",
        dedupe_key=key,
        email_template="document-expiry",
        email_subject="Document expiring",
        data={"documentId": 1},
        **fields,
    )


@pytest.mark.django_db
def test_creates_notification_email_and_send_job_together(tenant, member_of):
    user = member_of(tenant, "admin")
    result = notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert (result.notifications, result.emails, result.duplicates) == (1, 1, 0)
    email = OutboundEmail.objects.get()
    notification = Notification.objects.get()
    assert email.notification == notification
    assert email.idempotency_key == f"notification:{notification.pk}"
    assert notification.email_status == "queued"
    job = ProcrastinateJob.objects.get(task_name="notifications.send_email")
    assert job.args == {"outbound_email_id": email.pk, "tenant_id": tenant.pk}


@pytest.mark.django_db
def test_second_delivery_of_the_same_key_adds_nothing(tenant, member_of):
    user = member_of(tenant, "admin")
    notifications_deliver(tenant=tenant, drafts=[draft(user)])
    result = notifications_deliver(tenant=tenant, drafts=[draft(user), draft(user, key="expiry:doc-2:30")])
    assert (result.notifications, result.duplicates) == (1, 1)
    assert Notification.objects.count() == OutboundEmail.objects.count() == 2
    assert ProcrastinateJob.objects.filter(task_name="notifications.send_email").count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliveries_create_one_notification(tenant, member_of):
    user = member_of(tenant, "admin")
    barrier = threading.Barrier(2)
    results = []

    def deliver():
        barrier.wait()
        try:
            results.append(notifications_deliver(tenant=tenant, drafts=[draft(user)]))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.notifications for r in results) == [0, 1]
    assert Notification.objects.count() == OutboundEmail.objects.count() == 1
    assert ProcrastinateJob.objects.filter(task_name="notifications.send_email").count() == 1


@pytest.mark.django_db
def test_recipient_without_an_address_gets_the_notification_but_no_email(tenant, member_of):
    user = member_of(tenant, "admin", email="")
    result = notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert (result.notifications, result.emails) == (1, 0)
    assert Notification.objects.get().email_status == "skipped"
    assert not OutboundEmail.objects.exists()
    assert not ProcrastinateJob.objects.filter(task_name="notifications.send_email").exists()
