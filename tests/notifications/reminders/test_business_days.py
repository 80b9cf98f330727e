"""Reminders count to the effective due date (business days), at each firm's own thresholds, and
link to the item's page in the web app (KGC_APP_URL)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from notifications.models import Notification, OutboundEmail
from notifications.reminders import expiry_reminders_send, filing_reminders_send
from notifications.rendering import email_render

from .conftest import AS_OF, thresholds_sent

pytestmark = pytest.mark.django_db

SATURDAY = date(2026, 5, 16)


@pytest.fixture
def us_firm(tenant, member_of):
    tenant.holiday_country = "US"
    tenant.save()
    member_of(tenant, "admin")
    return tenant


def filings_sent(tenant, first: date, last: date) -> list[tuple[date, int]]:
    """(day, days left) of each filing reminder sent by a run every day from first to last."""
    sent = []
    day = first
    while day <= last:
        if filing_reminders_send(tenant=tenant, as_of=day).notifications:
            sent.append((day, Notification.objects.order_by("-pk").first().data["daysLeft"]))
        day += timedelta(days=1)
    return sent


def test_a_saturday_due_filing_counts_to_the_monday(us_firm, filing_due):
    filing_due(us_firm, 0, as_of=SATURDAY)
    sent = filings_sent(us_firm, SATURDAY - timedelta(days=20), SATURDAY + timedelta(days=3))
    # 14, 7 and 3 days before Monday 18 May, not before Saturday 16 May.
    assert sent == [(date(2026, 5, 4), 14), (date(2026, 5, 11), 7), (date(2026, 5, 15), 3)]


def test_the_email_says_when_it_is_due_and_why_it_moved(us_firm, filing_due):
    filing_due(us_firm, 0, as_of=SATURDAY)
    filing_reminders_send(tenant=us_firm, as_of=date(2026, 5, 15))
    notification = Notification.objects.get()
    assert notification.title.endswith("is due in 3 days")
    assert "due on Monday 18 May 2026 (moved from Saturday 16 May: weekend), in 3 days" in notification.body
    email = OutboundEmail.objects.get()
    text = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="F").text
    assert "Due date:  Monday 18 May 2026 (moved from Saturday 16 May: weekend)" in text


def test_a_filing_due_on_dcs_emancipation_day_moves_with_its_own_calendar(tenant, member_of, filing_due):
    member_of(tenant, "admin")  # a firm without a calendar, a federal filing that follows DC's holidays
    filing_due(tenant, 0, as_of=date(2027, 4, 16), holiday_country="US", holiday_subdivision="DC")
    filing_reminders_send(tenant=tenant, as_of=date(2027, 4, 16))  # its statutory day: 3 days left
    notification = Notification.objects.get()
    assert (notification.data["dueDate"], notification.data["statutoryDueDate"]) == ("2027-04-19", "2027-04-16")
    assert notification.data["dueNote"] == "moved from Friday 16 April: Emancipation Day, weekend"


def test_without_a_calendar_nothing_moves(tenant, member_of, filing_due):
    member_of(tenant, "admin")
    filing_due(tenant, 0, as_of=SATURDAY)
    assert filings_sent(tenant, SATURDAY - timedelta(days=3), SATURDAY) == [(SATURDAY - timedelta(days=3), 3)]
    assert Notification.objects.get().data["dueNote"] == ""


def test_a_firms_own_thresholds_are_used_with_the_crossing_rule(tenant, member_of, document_expiring):
    tenant.expiry_reminder_days = [60, 10]
    tenant.save()
    member_of(tenant, "admin")
    document_expiring(tenant, 45)
    for offset in range(0, 45):
        expiry_reminders_send(tenant=tenant, as_of=AS_OF + timedelta(days=offset))
    assert thresholds_sent("document_expiry") == [10, 60]  # never the default 30, 14, 7


def test_a_firm_that_sets_its_own_thresholds_later_does_not_step_back(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    document_expiring(tenant, 7)
    expiry_reminders_send(tenant=tenant, as_of=AS_OF)  # the default 7-day reminder
    tenant.expiry_reminder_days = [10, 3]
    tenant.save()
    expiry_reminders_send(tenant=tenant, as_of=AS_OF + timedelta(days=1))  # 6 days left: 10 was crossed
    assert thresholds_sent("document_expiry") == [7]
    expiry_reminders_send(tenant=tenant, as_of=AS_OF + timedelta(days=4))  # 3 days left
    assert thresholds_sent("document_expiry") == [3, 7]


def test_immediate_reminders_link_to_the_item_in_the_web_app(settings, tenant, member_of, document_expiring):
    settings.KGC_APP_URL = "https://app.example.com"
    member_of(tenant, "admin")
    document = document_expiring(tenant, 7)
    expiry_reminders_send(tenant=tenant, as_of=AS_OF)
    email = OutboundEmail.objects.get()
    url = f"https://app.example.com/clients/{document.client_id}/documents/{document.pk}"
    assert email.context["url"] == url
    rendered = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="F")
    assert f'href="{url}"' in rendered.html and f"Open the document: {url}" in rendered.text


def test_route_templates_shape_the_links(settings, tenant, member_of, filing_due):
    settings.KGC_APP_URL = "https://app.example.com/"
    settings.KGC_APP_FILING_ROUTE = "/t/{tenant_id}/clients/{client_id}/filings/{filing_id}"
    member_of(tenant, "admin")
    filing = filing_due(tenant, 3)
    filing_reminders_send(tenant=tenant, as_of=AS_OF)
    expected = f"https://app.example.com/t/{tenant.pk}/clients/{filing.client_id}/filings/{filing.pk}"
    assert OutboundEmail.objects.get().context["url"] == expected


def test_without_an_app_url_emails_carry_no_item_links(settings, tenant, member_of, document_expiring):
    settings.KGC_APP_URL = ""
    member_of(tenant, "admin")
    document_expiring(tenant, 7)
    expiry_reminders_send(tenant=tenant, as_of=AS_OF)
    email = OutboundEmail.objects.get()
    assert "url" not in email.context
    rendered = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="F")
    assert "Open the document" not in rendered.text and "/clients/" not in rendered.html
