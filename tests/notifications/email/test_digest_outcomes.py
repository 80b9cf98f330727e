"""A digest whose email finally fails or is suppressed does not leave its items "digested": they say
what became of them (failed, suppressed), as a notification's own email does; a resend that
succeeds makes them digested again. Sent through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import pytest

from notifications.delivery import EmailPermanentError, SendOutcome, email_send, emails_resend
from notifications.digests import digests_send
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
    return email_send(outbound_email_id=email.pk, tenant_id=email.tenant_id)


def test_a_sent_digest_leaves_its_items_digested(smtp_mailer, digest_email):
    assert send(digest_email) == SendOutcome.SENT
    assert item_statuses() == {("digested", False)}


def test_a_digest_refused_for_good_marks_its_items_failed(smtp_mailer, digest_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected by policy")
    with pytest.raises(EmailPermanentError):
        send(digest_email)
    assert OutboundEmail.objects.get().status == "failed"
    # Not "digested": the items say the email failed, and still name the digest that tried.
    assert item_statuses() == {("failed", False)}
    assert set(Notification.objects.values_list("digest_id", flat=True)) == {Digest.objects.get().pk}


def test_a_resend_that_succeeds_makes_them_digested_again(smtp_mailer, digest_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected by policy")
    with pytest.raises(EmailPermanentError):
        send(digest_email)
    emails_resend(email_ids=[digest_email.pk])
    assert send(OutboundEmail.objects.get()) == SendOutcome.SENT
    assert item_statuses() == {("digested", False)}


def test_a_digest_to_an_address_suppressed_meanwhile_marks_its_items_suppressed(smtp_mailer, digest_email):
    Suppression.objects.create(email=digest_email.to_email, reason="bounced")
    assert send(digest_email) == SendOutcome.SUPPRESSED
    assert item_statuses() == {("suppressed", False)}
    assert smtp_mailer.received == []


def test_other_emails_are_left_alone(smtp_mailer, notified_email, digest_email):
    email = notified_email()
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected by policy")
    with pytest.raises(EmailPermanentError):
        send(email)
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"
    assert set(Notification.objects.exclude(pk=email.notification_id).values_list("email_status", flat=True)) == {
        "digested"
    }
