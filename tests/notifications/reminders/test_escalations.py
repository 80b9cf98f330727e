"""Overdue filings escalate to the firm's admins and managers: on the first overdue day, then every
KGC_ESCALATION_EVERY_DAYS until filed; urgent (never in a digest), but "off" is respected."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from notifications.models import Notification, NotificationPreference, OutboundEmail
from notifications.reminders import filing_escalations_plan, filing_escalations_send
from notifications.rules import escalation_step
from tests.factories import FilingTaskFactory

from .conftest import AS_OF, recipients_of, roles_of

pytestmark = pytest.mark.django_db

DUE = date(2026, 11, 20)  # a Friday


def run(tenant, day: date):
    return filing_escalations_send(tenant=tenant, as_of=day)


@pytest.mark.parametrize(
    ("days_overdue", "every", "step"),
    [(0, 7, None), (-3, 7, None), (1, 7, 1), (2, 7, 1), (7, 7, 1), (8, 7, 8), (14, 7, 8), (15, 7, 15), (4, 3, 4)],
)
def test_the_step_due_is_the_latest_reached(days_overdue, every, step):
    assert escalation_step(days_overdue=days_overdue, every_days=every) == step


def test_nothing_on_the_due_day_itself(tenant, staff, filing_due):
    filing_due(tenant, 0)
    assert run(tenant, AS_OF).notifications == 0


def test_the_first_overdue_day_tells_admins_and_managers_only(tenant, staff, filing_due):
    filing = filing_due(tenant, 0, as_of=DUE)
    result = run(tenant, DUE + timedelta(days=1))
    escalations = Notification.objects.filter(kind="filing_escalation")
    assert result.notifications == 2
    assert roles_of(tenant, recipients_of(escalations)) == {"admin", "manager"}
    notification = escalations.first()
    assert notification.urgency == "URGENT"
    assert notification.title == f"Overdue: VAT Return 2026-10 for {filing.client.name} is 1 day overdue"
    assert notification.dedupe_key.startswith(f"filing_escalation:{filing.pk}@2026-11-20:1:")


def test_it_names_the_assignee_and_the_days_overdue(tenant, staff, filing_due, member_of):
    assignee = member_of(tenant, "tax_preparer", first_name="Amina", last_name="Otieno")
    filing = filing_due(tenant, 0, as_of=DUE)
    FilingTaskFactory(filing=filing, assignee=assignee)
    run(tenant, DUE + timedelta(days=8))
    notification = Notification.objects.filter(kind="filing_escalation").first()
    assert notification.data["assignees"] == ["Amina Otieno"] and notification.data["daysOverdue"] == 8
    assert "Assigned to: Amina Otieno." in notification.body


def test_it_repeats_weekly_and_stops_once_filed(tenant, member_of, filing_due):
    admin = member_of(tenant, "admin")
    filing = filing_due(tenant, 0, as_of=DUE)
    sent_on = []
    for offset in range(1, 30):
        day = DUE + timedelta(days=offset)
        if day == date(2026, 12, 10):
            filing.status = "submitted"
            filing.save()
        if run(tenant, day).notifications:
            sent_on.append(offset)
    assert sent_on == [1, 8, 15]  # the first overdue day, then every 7 days, until filed on day 20
    assert OutboundEmail.objects.filter(to_email=admin.email).count() == 3


def test_a_rejected_filing_still_escalates(tenant, staff, filing_due):
    filing_due(tenant, 0, as_of=DUE, status="rejected")
    assert run(tenant, DUE + timedelta(days=1)).notifications == 2


def test_a_missed_day_sends_the_step_then_due_once(tenant, member_of, filing_due):
    member_of(tenant, "admin")
    filing_due(tenant, 0, as_of=DUE)
    assert run(tenant, DUE + timedelta(days=10)).notifications == 1  # days 1 and 8 missed: step 8 now
    assert [run(tenant, DUE + timedelta(days=d)).notifications for d in (11, 12, 13, 14, 15)] == [0, 0, 0, 0, 1]


def test_the_interval_is_a_setting(settings, tenant, member_of, filing_due):
    settings.KGC_ESCALATION_EVERY_DAYS = 3
    member_of(tenant, "admin")
    filing_due(tenant, 0, as_of=DUE)
    assert [run(tenant, DUE + timedelta(days=d)).notifications for d in range(1, 8)] == [1, 0, 0, 1, 0, 0, 1]


def test_it_bypasses_the_digest_but_respects_off(tenant, member_of, filing_due):
    reader, quiet = member_of(tenant, "admin"), member_of(tenant, "manager")
    for kind in ("filing_reminder", "filing_escalation"):
        NotificationPreference.objects.create(tenant=tenant, user=reader, kind=kind, email="daily_digest")
    NotificationPreference.objects.create(tenant=tenant, user=quiet, kind="filing_escalation", email="off")
    filing_due(tenant, 0, as_of=DUE)
    run(tenant, DUE + timedelta(days=1))
    statuses = dict(Notification.objects.values_list("recipient_id", "email_status"))
    assert statuses == {reader.pk: "queued", quiet.pk: "opted_out"}  # emailed now, not held for the digest
    assert OutboundEmail.objects.get().template == "filing-escalation"


def test_a_second_run_the_same_day_adds_nothing(tenant, staff, filing_due):
    filing_due(tenant, 0, as_of=DUE)
    run(tenant, DUE + timedelta(days=1))
    again = run(tenant, DUE + timedelta(days=1))
    assert (again.notifications, again.duplicates) == (0, 0)  # nothing due: the key is already there
    assert Notification.objects.count() == 2


def test_it_counts_from_the_effective_due_date(tenant, member_of, filing_due):
    tenant.holiday_country = "US"
    tenant.save()
    member_of(tenant, "admin")
    filing_due(tenant, 0, as_of=date(2026, 5, 16))  # Saturday: effectively due Monday 18 May
    assert run(tenant, date(2026, 5, 18)).notifications == 0  # not overdue on its effective day
    assert run(tenant, date(2026, 5, 19)).notifications == 1
    notification = Notification.objects.get()
    assert notification.data["dueNote"] == "moved from Saturday 16 May: weekend"
    assert "Monday 18 May 2026 (moved from Saturday 16 May: weekend)" in notification.body


def test_the_dry_run_writes_nothing(tenant, staff, filing_due):
    filing_due(tenant, 0, as_of=DUE)
    plan = filing_escalations_plan(tenant=tenant, as_of=DUE + timedelta(days=1), explain=True)
    assert (len(plan.reminders), plan.due) == (2, 2)
    assert Notification.objects.count() == 0


def test_the_email_renders_with_its_link_to_the_filing(settings, tenant, member_of, filing_due):
    from notifications.rendering import email_render

    settings.KGC_APP_URL = "https://app.example.com"
    member_of(tenant, "admin")
    filing = filing_due(tenant, 0, as_of=DUE)
    run(tenant, DUE + timedelta(days=1))
    email = OutboundEmail.objects.get()
    rendered = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="Firm")
    assert f"https://app.example.com/filings/{filing.pk}" in rendered.text
    assert "Days overdue: 1" in rendered.text and "Was due:      Friday 20 November 2026" in rendered.text
