"""Document-expiry notifications for one tenant, on the real database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Notification, OutboundEmail
from notifications.reminders import expiry_reminders_plan, expiry_reminders_send
from tests.factories import ClientFactory, DocumentFactory, DocumentTypeFactory, TenantFactory
from tests.notifications.reminders.conftest import AS_OF, recipients_of, roles_of, thresholds_sent

pytestmark = pytest.mark.django_db


def send(tenant, as_of=AS_OF):
    return expiry_reminders_send(tenant=tenant, as_of=as_of)


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(31, None), (30, 30), (29, 30), (15, 30), (14, 14), (8, 14), (7, 7), (6, 7), (1, 7), (0, 7), (-1, None)],
)
def test_first_run_sends_the_smallest_threshold_crossed(tenant, member_of, document_expiring, days_left, expected):
    member_of(tenant, "admin")
    document_expiring(tenant, days_left)
    send(tenant)
    assert thresholds_sent() == ([] if expected is None else [expected])


def test_daily_runs_send_each_threshold_once_on_its_day(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    document = document_expiring(tenant, 40)
    sent_on = []
    for days_left in range(40, -3, -1):
        if send(tenant, as_of=document.expires_on - timedelta(days=days_left)).notifications:
            sent_on.append(days_left)
    assert sent_on == [30, 14, 7]
    assert thresholds_sent() == [7, 14, 30]


def test_catch_up_after_two_missed_days_sends_one_reminder_the_smallest_crossed(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    document = document_expiring(tenant, 20)
    send(tenant, as_of=document.expires_on - timedelta(days=20))  # the 30-day reminder
    # the runs at 14 and 13 days left never happened
    result = send(tenant, as_of=document.expires_on - timedelta(days=12))
    assert result.notifications == 1
    assert thresholds_sent() == [14, 30]


def test_first_run_in_the_last_week_sends_one_reminder_not_three(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    document_expiring(tenant, 5)
    result = send(tenant)
    assert (result.notifications, thresholds_sent()) == (1, [7])


def test_second_run_creates_nothing_new(tenant, staff, document_expiring):
    document_expiring(tenant, 14)
    first = send(tenant)
    second = send(tenant)
    assert (first.notifications, second.notifications, second.emails) == (3, 0, 0)
    assert Notification.objects.count() == OutboundEmail.objects.count() == 3
    assert OutboundEmail.objects.filter(status="queued").count() == 3


def test_renewal_stops_the_old_documents_reminders(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    old = document_expiring(tenant, 20)
    send(tenant)
    document_expiring(tenant, 400, client=old.client, document_type=old.document_type)
    send(tenant, as_of=AS_OF + timedelta(days=6))  # 14 days left on the old one
    assert thresholds_sent() == [30]


def test_renewal_without_expiry_date_stops_reminders(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    old = document_expiring(tenant, 10)
    DocumentFactory(tenant=tenant, client=old.client, document_type=old.document_type, expires_on=None)
    assert send(tenant).notifications == 0


def test_another_clients_renewal_does_not_stop_reminders(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    old = document_expiring(tenant, 10)
    document_expiring(tenant, 400, document_type=old.document_type)  # same type, another client
    assert send(tenant).notifications == 1


def test_recipients_are_active_admins_managers_and_compliance_officers(tenant, staff, document_expiring):
    document_expiring(tenant, 14)
    send(tenant)
    recipients = recipients_of(Notification.objects.all())
    assert roles_of(tenant, recipients) == {"admin", "manager", "compliance_officer"}
    assert len(recipients) == 3


def test_inactive_user_gets_nothing(tenant, staff, document_expiring):
    get_user_model().objects.filter(pk=staff["manager"].pk).update(is_active=False)
    document_expiring(tenant, 14)
    send(tenant)
    assert staff["manager"].pk not in recipients_of(Notification.objects.all())


def test_inactive_client_gets_nothing(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    document_expiring(tenant, 14, client=ClientFactory(tenant=tenant, is_active=False))
    assert send(tenant).notifications == 0


def test_inactive_tenant_gets_nothing(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    document_expiring(tenant, 14)
    tenant.is_active = False
    tenant.save()
    assert send(tenant).notifications == 0


def test_notification_and_email_carry_the_templates_fields(tenant, member_of, document_expiring):
    admin = member_of(tenant, "admin", email="ana@firm.example", first_name="Ana", last_name="Otieno")
    document = document_expiring(tenant, 14)
    send(tenant)
    notification = Notification.objects.get()
    email = OutboundEmail.objects.get()
    assert notification.kind == "document_expiry"
    assert notification.dedupe_key == f"document_expiry:{document.pk}@{document.expires_on}:14:{admin.pk}"
    assert notification.title == f"TIN Certificate for {document.client.name} expires in 14 days"
    assert (email.to_email, email.to_name, email.template, email.subject) == (
        "ana@firm.example",
        "Ana Otieno",
        "document-expiry",
        notification.title,
    )
    assert email.context == {
        "documentId": document.pk,
        "clientId": document.client_id,
        "documentTitle": document.title,
        "documentType": "TIN Certificate",
        "clientName": document.client.name,
        "expiresOn": document.expires_on.isoformat(),
        "daysLeft": 14,
        "tenantName": tenant.name,
        "asOf": "2026-11-29",  # the tenant-local day it was made for: that day's digest
    }


def test_dry_run_plan_writes_nothing(tenant, staff, document_expiring):
    document_expiring(tenant, 14)
    plan = expiry_reminders_plan(tenant=tenant, as_of=AS_OF)
    assert len(plan.reminders) == 3
    assert Notification.objects.count() == OutboundEmail.objects.count() == 0


def test_query_count_does_not_grow_with_documents(member_of):
    def queries_for(documents: int) -> int:
        tenant = TenantFactory()
        for role in ("admin", "manager", "compliance_officer"):
            member_of(tenant, role)
        client = ClientFactory(tenant=tenant)
        for index in range(documents):
            DocumentFactory(
                tenant=tenant,
                client=client,
                document_type=DocumentTypeFactory(code=f"type-{index}"),
                expires_on=AS_OF + timedelta(days=index % 30),
            )
        with CaptureQueriesContext(connection) as captured:
            result = send(tenant)
        assert result.notifications == 3 * documents
        return len(captured)

    assert queries_for(1) == queries_for(40)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_create_each_notification_once(tenant, staff, document_expiring):
    for days_left in (3, 14, 25):
        document_expiring(tenant, days_left)
    barrier = threading.Barrier(2)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(send(tenant))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.notifications for r in results) == 9
    assert Notification.objects.count() == OutboundEmail.objects.count() == 9
    assert OutboundEmail.objects.filter(status="queued").count() == 9
