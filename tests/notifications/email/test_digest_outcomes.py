"""A digest whose email finally fails or is suppressed does not leave its items "digested": they say
what became of them (failed, suppressed), as a notification's own email does; a resend that
succeeds makes them digested again. Sent through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import pytest

from notifications.delivery import emails_resend
from notifications.digests import digests_send
from notifications.dispatcher import emails_send
from notifications.models import Digest, Notification, OutboundEmail, Suppression
from tests.notifications.digests.conftest import document_draft, filing_draft

pytestmark = pytest.mark.django_db


@pytest.fixture
def digest_email(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana), filing_draft(ana))
    digests_send(tenant=tenant, as_of=digest_day)
    return OutboundEmail.objects.get(template="daily-digest")


def item_statuses() -> set[tuple[str, bool]]:
    return {
        (status, digest_id is None)
        for status, digest_id in Notification.objects.values_list("email_status", "digest_id")
    }


def send(email: OutboundEmail) -> str:
    """Send what is queued (this email first in line) and return this email's outcome."""
    run = emails_send()
    return next(outcome.status for outcome in run.outcomes if outcome.email_id == email.pk)


def test_a_sent_digest_leaves_its_items_digested(smtp_mailer, digest_email):
    assert send(digest_email) == "sent"
    assert item_statuses() == {("digested", False)}


def test_a_digest_refused_for_good_marks_its_items_failed(smtp_mailer, digest_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected by policy")
    assert send(digest_email) == "failed"
    assert OutboundEmail.objects.get().status == "failed"
    # Not "digested": the items say the email failed, and still name the digest that tried.
    assert item_statuses() == {("failed", False)}
    assert set(Notification.objects.values_list("digest_id", flat=True)) == {Digest.objects.get().pk}


def test_a_resend_that_succeeds_makes_them_digested_again(smtp_mailer, digest_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected by policy")
    assert send(digest_email) == "failed"
    emails_resend(email_ids=[digest_email.pk])
    assert send(OutboundEmail.objects.get()) == "sent"
    assert item_statuses() == {("digested", False)}


def test_a_digest_to_an_address_suppressed_meanwhile_marks_its_items_suppressed(smtp_mailer, digest_email):
    Suppression.objects.create(email=digest_email.to_email, reason="bounced")
    assert send(digest_email) == "suppressed"
    assert item_statuses() == {("suppressed", False)}
    assert smtp_mailer.received == []


def test_other_emails_are_left_alone(smtp_mailer, notified_email, digest_email):
    email = notified_email()
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected by policy")
    OutboundEmail.objects.filter(pk=digest_email.pk).update(status="sent")  # the digest went out earlier
    Notification.objects.filter(digest__isnull=False).update(email_status="digested")
    assert send(email) == "failed"
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"
    assert set(Notification.objects.exclude(pk=email.notification_id).values_list("email_status", flat=True)) == {
        "digested"
    }
