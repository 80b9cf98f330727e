"""Filing reminders for one tenant, on the real database."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.models import Filing, Membership
from notifications.models import Notification, OutboundEmail
from notifications.reminders import filing_reminders_send
from tests.factories import ClientFactory, FilingFactory, FilingTaskFactory, TenantFactory
from tests.notifications.reminders.conftest import AS_OF, recipients_of, roles_of, thresholds_sent

pytestmark = pytest.mark.django_db


def send(tenant, as_of=AS_OF):
    return filing_reminders_send(tenant=tenant, as_of=as_of)


@pytest.mark.parametrize(
    ("days_left", "expected"), [(15, None), (14, 14), (8, 14), (7, 7), (4, 7), (3, 3), (0, 3), (-1, None)]
)
def test_first_run_sends_the_smallest_threshold_crossed(tenant, member_of, filing_due, days_left, expected):
    member_of(tenant, "admin")
    filing_due(tenant, days_left)
    send(tenant)
    assert thresholds_sent() == ([] if expected is None else [expected])


@pytest.mark.parametrize(("days_left", "urgency"), [(14, "NORMAL"), (8, "NORMAL"), (7, "HIGH"), (3, "URGENT")])
def test_urgency_follows_days_left(tenant, member_of, filing_due, days_left, urgency):
    member_of(tenant, "admin")
    filing_due(tenant, days_left)
    send(tenant)
    notification = Notification.objects.get()
    assert (notification.urgency, notification.data["urgency"]) == (urgency, urgency)


def test_catch_up_after_two_missed_days_sends_one_reminder_the_smallest_crossed(tenant, member_of, filing_due):
    member_of(tenant, "admin")
    filing = filing_due(tenant, 10)
    send(tenant)  # the 14-day reminder
    # the runs at 7 and 6 days left never happened
    result = send(tenant, as_of=filing.due_date - timedelta(days=5))
    assert result.notifications == 1
    assert thresholds_sent() == [7, 14]


def test_second_run_creates_nothing_new(tenant, staff, filing_due):
    filing_due(tenant, 3)
    first = send(tenant)
    second = send(tenant)
    assert (first.notifications, second.notifications, second.emails) == (4, 0, 0)
    assert Notification.objects.count() == OutboundEmail.objects.count() == 4


@pytest.mark.parametrize("status", [Filing.Status.SUBMITTED, Filing.Status.ACCEPTED])
def test_submitting_a_filing_stops_its_reminders(tenant, member_of, filing_due, status):
    member_of(tenant, "admin")
    filing = filing_due(tenant, 10)
    send(tenant)
    Filing.objects.filter(pk=filing.pk).update(status=status)
    result = send(tenant, as_of=filing.due_date - timedelta(days=3))
    assert (result.notifications, thresholds_sent()) == (0, [14])


def test_prepared_filing_is_reminded(tenant, member_of, filing_due):
    member_of(tenant, "admin")
    filing_due(tenant, 10, status=Filing.Status.PREPARED)
    assert send(tenant).notifications == 1


def test_recipients_are_staff_by_role_plus_assignees(tenant, staff, filing_due):
    filing = filing_due(tenant, 7)
    FilingTaskFactory(filing=filing, assignee=staff["viewer"])
    send(tenant)
    recipients = recipients_of(Notification.objects.all())
    assert recipients == {user.pk for user in staff.values()}


def test_viewer_without_a_task_gets_nothing(tenant, staff, filing_due):
    filing_due(tenant, 7)
    send(tenant)
    recipients = recipients_of(Notification.objects.all())
    assert roles_of(tenant, recipients) == {"admin", "manager", "tax_preparer", "compliance_officer"}
    assert staff["viewer"].pk not in recipients


def test_assignee_on_another_filing_is_not_told_about_this_one(tenant, member_of, filing_due):
    viewer = member_of(tenant, "viewer")
    filing_due(tenant, 7)
    other = filing_due(tenant, 30)
    FilingTaskFactory(filing=other, assignee=viewer)
    assert send(tenant).notifications == 0


def test_assignee_no_longer_a_member_is_skipped_and_logged(tenant, member_of, filing_due, caplog):
    member_of(tenant, "admin")
    former = member_of(tenant, "tax_preparer")
    filing = filing_due(tenant, 7)
    FilingTaskFactory(filing=filing, assignee=former)
    Membership.objects.filter(tenant=tenant, user=former).delete()
    with caplog.at_level(logging.WARNING, logger="notifications.reminders"):
        result = send(tenant)
    assert former.pk not in recipients_of(Notification.objects.all())
    assert result.skipped_assignees == 1
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "reminder_assignee_skipped"]
    assert (record.user_id, record.filing_id, record.tenant_id) == (former.pk, filing.pk, tenant.pk)


def test_deactivated_assignee_is_skipped(tenant, member_of, filing_due):
    member_of(tenant, "admin")
    assignee = member_of(tenant, "viewer")
    FilingTaskFactory(filing=filing_due(tenant, 7), assignee=assignee)
    get_user_model().objects.filter(pk=assignee.pk).update(is_active=False)
    result = send(tenant)
    assert (result.notifications, result.skipped_assignees) == (1, 1)


def test_inactive_client_gets_nothing(tenant, member_of, filing_due):
    member_of(tenant, "admin")
    filing_due(tenant, 7, client=ClientFactory(tenant=tenant, is_active=False))
    assert send(tenant).notifications == 0


def test_notification_and_email_carry_the_templates_fields(tenant, member_of, filing_due):
    admin = member_of(tenant, "admin")
    filing = filing_due(tenant, 2, filing_type="PAYE Return", period="2026-11")
    send(tenant)
    notification = Notification.objects.get()
    email = OutboundEmail.objects.get()
    assert notification.dedupe_key == f"filing_reminder:{filing.pk}@{filing.due_date}:3:{admin.pk}"
    assert notification.title == f"Urgent: PAYE Return 2026-11 for {filing.client.name} is due in 2 days"
    assert (email.template, email.subject) == ("filing-reminder", notification.title)
    assert email.context == {
        "filingId": filing.pk,
        "clientId": filing.client_id,
        "filingType": "PAYE Return",
        "period": "2026-11",
        "clientName": filing.client.name,
        "dueDate": filing.due_date.isoformat(),
        "statutoryDueDate": filing.due_date.isoformat(),  # no calendar: the same
        "dueNote": "",
        "daysLeft": 2,
        "urgency": "URGENT",
        "tenantName": tenant.name,
        "asOf": "2026-11-29",
    }


def test_query_count_does_not_grow_with_filings(member_of):
    def queries_for(filings: int) -> int:
        tenant = TenantFactory()
        member_of(tenant, "admin")
        assignees = [member_of(tenant, "tax_preparer") for _ in range(3)]
        for index in range(filings):
            filing = FilingFactory(
                tenant=tenant, client=ClientFactory(tenant=tenant), due_date=AS_OF + timedelta(days=index % 15)
            )
            FilingTaskFactory(filing=filing, assignee=assignees[index % 3])
        with CaptureQueriesContext(connection) as captured:
            result = send(tenant)
        assert result.notifications == 4 * filings
        return len(captured)

    assert queries_for(1) == queries_for(30)
