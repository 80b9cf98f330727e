"""A digest speaks of its own day: items written for its date, items resolved since left out (and
counted), a caught-up morning's items still in that day's digest; and items of members who are
gone never make an empty digest job, nor a flood when they come back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from procrastinate.contrib.django.models import ProcrastinateJob

from compliance.models import Membership
from kgc.queue import jobs
from notifications.digests import DigestItem, digest_compose, digests_fan_out, digests_send
from notifications.links import AppRoutes
from notifications.models import Digest, Notification, OutboundEmail
from notifications.reminders import expiry_reminders_send, filing_reminders_send
from notifications.rendering import email_render
from tests.factories import DocumentFactory, DocumentTypeFactory, FilingFactory, TenantFactory
from tests.notifications.digests.conftest import document_draft

pytestmark = pytest.mark.django_db

DAY = date(2027, 3, 1)
NINE = datetime(2027, 3, 1, 9, tzinfo=UTC)


@pytest.fixture
def utc_firm(reader):
    tenant = TenantFactory(timezone="UTC", name="Kestrel Tax")
    return tenant, reader(tenant=tenant)


def make_time(when: datetime):
    """Notifications made now carry this creation time (the services read the application's clock)."""
    import time_machine

    return time_machine.travel(when, tick=False)


# --- Items written for the digest's date ------------------------------------------------------


def test_an_items_line_is_written_for_the_digests_day_not_the_day_it_was_made():
    data = {"documentId": 1, "clientId": 1, "clientName": "Acme", "documentType": "TIN", "expiresOn": "2027-03-10"}
    item = DigestItem(1, "document_expiry", "NORMAL", "TIN for Acme expires in 9 days", data)  # made on 1 March
    context = digest_compose(items=[item], tenant_name="K", as_of=date(2027, 3, 2), routes=AppRoutes(base="")).context
    line = context["groups"][0]["clients"][0]["items"][0]
    assert (context["dateLine"], line["title"]) == ("Tuesday 2 March 2027", "TIN for Acme expires in 8 days")
    assert line["detail"] == "TIN expires on Wednesday 10 March 2027"


def test_no_item_text_disagrees_with_the_date_line(utc_firm):
    tenant, ana = utc_firm
    DocumentFactory(tenant=tenant, client__tenant=tenant, expires_on=date(2027, 3, 10))
    with make_time(datetime(2027, 3, 1, 10, tzinfo=UTC)):  # after 1 March's digest: it waits a day
        expiry_reminders_send(tenant=tenant, as_of=DAY)
    assert "9 days" in Notification.objects.get().title
    digests_send(tenant=tenant, as_of=DAY + timedelta(days=1))
    email = OutboundEmail.objects.get()
    text = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="K").text
    assert "Tuesday 2 March 2027" in text and "expires in 8 days" in text and "9 days" not in text


# --- Items resolved since they were made ------------------------------------------------------


def test_a_renewed_document_and_a_filed_filing_are_left_out_and_counted(utc_firm):
    tenant, ana = utc_firm
    tin = DocumentTypeFactory(code="tin", name="TIN")
    old = DocumentFactory(tenant=tenant, client__tenant=tenant, document_type=tin, expires_on=date(2027, 3, 10))
    other = DocumentFactory(tenant=tenant, client=old.client, expires_on=date(2027, 3, 12))
    filing = FilingFactory(client=old.client, due_date=date(2027, 3, 11))
    with make_time(datetime(2027, 3, 1, 8, tzinfo=UTC)):
        expiry_reminders_send(tenant=tenant, as_of=DAY)
        filing_reminders_send(tenant=tenant, as_of=DAY)
    DocumentFactory(tenant=tenant, client=old.client, document_type=tin, expires_on=date(2028, 3, 10))  # renewed
    filing.status = "submitted"
    filing.save()

    result = digests_send(tenant=tenant, as_of=DAY)

    assert (result.resolved, [d.items for d in result.digests]) == (2, [1])
    resolved = dict(Notification.objects.filter(email_status="resolved").values_list("kind", "data__resolvedBecause"))
    assert resolved == {"document_expiry": "renewed", "filing_reminder": "filed"}
    assert Notification.objects.get(email_status="digested").data["documentId"] == other.pk
    email = OutboundEmail.objects.get()
    assert email.context["resolved"] == 2
    text = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="K").text
    assert "2 items left out: resolved since they were made" in text


def test_nothing_left_to_tell_sends_no_digest(utc_firm):
    tenant, ana = utc_firm
    filing = FilingFactory(client__tenant=tenant, due_date=date(2027, 3, 11))
    with make_time(datetime(2027, 3, 1, 8, tzinfo=UTC)):
        filing_reminders_send(tenant=tenant, as_of=DAY)
    filing.status = "accepted"
    filing.save()
    assert digests_send(tenant=tenant, as_of=DAY).digests == []
    assert Digest.objects.count() == OutboundEmail.objects.count() == 0


# --- A caught-up morning still makes that day's digest ----------------------------------------


def test_items_made_for_the_day_after_its_digest_hour_still_go_in_it(utc_firm):
    tenant, ana = utc_firm
    DocumentFactory(tenant=tenant, client__tenant=tenant, expires_on=date(2027, 3, 10))
    with make_time(datetime(2027, 3, 1, 11, tzinfo=UTC)):  # the 08:00 run caught up at 11:00
        expiry_reminders_send(tenant=tenant, as_of=DAY)
    assert [d.items for d in digests_send(tenant=tenant, as_of=DAY).digests] == [1]


def test_the_digest_waits_for_the_tenants_morning_checks_still_queued(utc_firm, waiting):
    tenant, ana = utc_firm
    with make_time(datetime(2027, 3, 1, 8, tzinfo=UTC)):
        waiting(document_draft(ana), tenant=tenant)
    jobs.job_defer(task_name="notifications.check_expiry", kwargs={"tenant_id": tenant.pk, "as_of": "2027-03-01"})
    assert digests_fan_out(at=NINE) == []  # its morning has not run yet
    ProcrastinateJob.objects.filter(task_name="notifications.check_expiry").update(status="succeeded")
    assert len(digests_fan_out(at=NINE + timedelta(hours=1))) == 1


# --- Members who are gone ---------------------------------------------------------------------


def test_items_of_a_deactivated_member_make_no_digest_job(utc_firm, waiting):
    tenant, ana = utc_firm
    with make_time(datetime(2027, 3, 1, 8, tzinfo=UTC)):
        waiting(document_draft(ana), tenant=tenant)
    get_user_model().objects.filter(pk=ana.pk).update(is_active=False)
    assert digests_fan_out(at=NINE) == []
    assert not ProcrastinateJob.objects.filter(task_name="notifications.send_digests").exists()


def test_items_of_a_removed_member_make_no_digest_job(utc_firm, waiting):
    tenant, ana = utc_firm
    with make_time(datetime(2027, 3, 1, 8, tzinfo=UTC)):
        waiting(document_draft(ana), tenant=tenant)
    Membership.objects.filter(tenant=tenant, user=ana).delete()
    assert digests_fan_out(at=NINE) == []


def test_a_member_reactivated_months_later_gets_no_flood(settings, utc_firm, waiting):
    settings.KGC_DIGEST_MAX_WAIT_DAYS = 7
    tenant, ana = utc_firm
    with make_time(datetime(2027, 1, 4, 8, tzinfo=UTC)):
        waiting(*(document_draft(ana) for _ in range(3)), tenant=tenant)
    get_user_model().objects.filter(pk=ana.pk).update(is_active=False)
    for day in range(60):  # two months of hourly ticks at 09:00 find nothing to send
        assert digests_fan_out(at=datetime(2027, 1, 4, 9, tzinfo=UTC) + timedelta(days=day)) == []
    assert set(Notification.objects.values_list("email_status", flat=True)) == {"expired"}

    get_user_model().objects.filter(pk=ana.pk).update(is_active=True)
    with make_time(datetime(2027, 3, 5, 8, tzinfo=UTC)):
        waiting(document_draft(ana), tenant=tenant)
    assert len(digests_fan_out(at=datetime(2027, 3, 5, 9, tzinfo=UTC))) == 1
    assert [d.items for d in digests_send(tenant=tenant, as_of=date(2027, 3, 5)).digests] == [1]  # only this week's


def test_a_digest_sent_by_hand_leaves_out_items_past_their_wait(settings, utc_firm, waiting):
    settings.KGC_DIGEST_MAX_WAIT_DAYS = 3
    tenant, ana = utc_firm
    with make_time(datetime(2027, 2, 20, 8, tzinfo=UTC)):
        waiting(document_draft(ana), tenant=tenant)
    with make_time(datetime(2027, 3, 1, 8, tzinfo=UTC)):
        waiting(document_draft(ana), tenant=tenant)
    result = digests_send(tenant=tenant, as_of=DAY)
    assert (result.expired, [d.items for d in result.digests]) == (1, [1])
