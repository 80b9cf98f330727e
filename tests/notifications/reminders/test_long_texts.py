"""Reminders built from names at their maximum length fit their columns, and one bad item
is recorded and skipped while the rest of the tenant's run goes on."""

from __future__ import annotations

import logging

import pytest

from notifications import rules
from notifications.models import Notification, OutboundEmail
from notifications.reminders import expiry_reminders_send, filing_reminders_send
from tests.factories import ClientFactory, DocumentTypeFactory
from tests.notifications.reminders.conftest import AS_OF

pytestmark = pytest.mark.django_db

LONGEST_NAME = "N" * 200  # Client.name and DocumentType.name are varchar(200)


def test_expiry_reminder_of_the_longest_names_fits_its_columns(tenant, member_of, document_expiring):
    member_of(tenant, "admin", first_name="F" * 150, last_name="L" * 150)
    client = ClientFactory(tenant=tenant, name=LONGEST_NAME)
    document_type = DocumentTypeFactory(code="long-type", name="T" * 200)
    document_expiring(tenant, 5, client=client, document_type=document_type, title="D" * 300)

    result = expiry_reminders_send(tenant=tenant, as_of=AS_OF)

    assert result.notifications == 1
    notification = Notification.objects.get()
    email = OutboundEmail.objects.get()
    assert (len(notification.title), notification.title[-1]) == (300, "…")
    assert (len(email.subject), email.subject[-1]) == (300, "…")
    assert (len(email.to_name), email.to_name[-1]) == (200, "…")


def test_filing_reminder_of_the_longest_names_fits_its_columns(tenant, member_of, filing_due):
    member_of(tenant, "tax_preparer")
    client = ClientFactory(tenant=tenant, name=LONGEST_NAME)
    filing_due(tenant, 2, client=client, filing_type="V" * 64, period="P" * 32)

    result = filing_reminders_send(tenant=tenant, as_of=AS_OF)

    assert result.notifications == 1
    title = Notification.objects.get().title
    assert title.startswith("Urgent: VVVV") and (len(title), title[-1]) == (300, "…")


def test_one_bad_reminder_is_recorded_and_skipped_and_the_rest_are_sent(
    tenant, member_of, document_expiring, monkeypatch, caplog
):
    member_of(tenant, "admin")
    good = [document_expiring(tenant, 5), document_expiring(tenant, 6)]
    bad = document_expiring(tenant, 7)
    texts = rules._expiry_texts

    def broken_for_one(document, days):
        title, body = texts(document, days)
        # A NUL character: PostgreSQL refuses it in text, as it would refuse any bad value.
        return (title + "\x00", body) if document.document_id == bad.pk else (title, body)

    monkeypatch.setattr(rules, "_expiry_texts", broken_for_one)
    caplog.set_level(logging.WARNING, logger="notifications")

    result = expiry_reminders_send(tenant=tenant, as_of=AS_OF)

    assert (result.notifications, result.summary()["items_skipped"]) == (2, 1)
    assert {n.data["documentId"] for n in Notification.objects.all()} == {d.pk for d in good}
    skipped = [r for r in caplog.records if getattr(r, "event", "") == "notification_skipped"]
    assert [r.dedupe_key.split("@")[0] for r in skipped] == [f"document_expiry:{bad.pk}"]
