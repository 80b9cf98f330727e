"""Sending queued emails against a real SMTP server (aiosmtpd): parts, headers, outcomes,
retries, suppression, never twice. The claim, the send and the record are the dispatcher's
own (``emails_send`` runs them once, here, inside the test's transaction)."""

from __future__ import annotations

import contextlib
import logging

import pytest

from notifications.dispatcher import emails_send
from notifications.exceptions import InvalidEmailRequest
from notifications.models import Notification, OutboundEmail, Suppression
from notifications.services import email_enqueue
from tests.notifications.email.conftest import SMTP_PASSWORD, SMTP_USER


def send_now(**options):
    return emails_send(**options)


def fresh(email: OutboundEmail) -> OutboundEmail:
    email.refresh_from_db()
    return email


@pytest.fixture
def delivered(db, smtp_mailer, notified_email):
    """One notification email sent through the SMTP server: (row, what the server received)."""
    email = notified_email()
    assert send_now().count("sent") == 1
    return fresh(email), smtp_mailer.received


def test_message_has_a_text_and_an_html_part(delivered):
    _, received = delivered
    message = received[0].message
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert "TIN Certificate expires in 30 days" in message.get_body(("plain",)).get_content()
    assert "style=" in message.get_body(("html",)).get_content()


def test_message_carries_the_stable_message_id_and_kgc_headers(delivered):
    email, received = delivered
    message = received[0].message
    assert message["Message-ID"] == f"<outbound-{email.pk}.{email.tenant_id}@kgc-compliance.com>"
    assert message["X-KGC-Tenant"] == str(email.tenant_id)
    assert message["X-KGC-Notification"] == str(email.notification_id)
    assert message["Subject"] == email.subject
    assert message["From"] == "KGC Compliance Cloud <noreply@kgc-compliance.com>"


def test_an_email_of_no_notification_carries_no_notification_header(db, smtp_mailer, make_email):
    make_email()
    send_now()
    assert smtp_mailer.received[0].message["X-KGC-Notification"] is None


def test_a_digest_carries_no_notification_header(db, smtp_mailer, tenant, reader, waiting, digest_day):
    from notifications.digests import digests_send
    from tests.notifications.digests.conftest import document_draft

    ana = reader()
    waiting(document_draft(ana), document_draft(ana))
    digests_send(tenant=tenant, as_of=digest_day)
    assert send_now().count("sent") == 1
    [received] = smtp_mailer.received
    assert received.message["Subject"].startswith("2 documents expiring")
    assert received.message["X-KGC-Tenant"] == str(tenant.pk)
    assert "X-KGC-Notification" not in received.message


def test_envelope_goes_to_the_one_recipient(delivered):
    email, received = delivered
    assert [(r.mail_from, r.rcpt_tos) for r in received] == [("noreply@kgc-compliance.com", [email.to_email])]


def test_row_records_sent_with_message_id_time_and_worker(delivered):
    email, _ = delivered
    assert (email.status, email.attempts, email.last_error) == ("sent", 1, "")
    assert email.message_id == f"<outbound-{email.pk}.{email.tenant_id}@kgc-compliance.com>"
    assert email.sent_at is not None and email.finished_at == email.sent_at
    assert email.claimed_by is not None and email.claimed_at <= email.sent_at


def test_notification_mirrors_sent(delivered):
    email, _ = delivered
    assert Notification.objects.get(pk=email.notification_id).email_status == "sent"


def test_each_recipient_gets_a_message_of_their_own(db, smtp_mailer, tenant, member_of, notified_email):
    emails = [notified_email(key=f"expiry:doc-1:30:{n}", user=member_of(tenant, "manager")) for n in range(3)]
    assert send_now().count("sent") == 3
    assert sorted(r.rcpt_tos[0] for r in smtp_mailer.received) == sorted(e.to_email for e in emails)
    for received in smtp_mailer.received:
        assert [address.addr_spec for address in received.message["To"].addresses] == received.rcpt_tos


def test_a_second_run_after_success_sends_nothing(delivered):
    _, received = delivered
    assert send_now().outcomes == []
    assert len(received) == 1


def test_recipient_refused_with_550_fails_at_once(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.1.1 No such user here")
    email = notified_email()
    assert send_now().count("failed") == 1
    email = fresh(email)
    assert (email.status, email.attempts, email.delivery_unknown) == ("failed", 1, False)
    assert "550 5.1.1 No such user here" in email.last_error
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"
    assert smtp_mailer.received == []


def test_transient_451_makes_the_row_wait_for_its_backoff(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("451 4.3.0 Try again later")
    email = notified_email()
    assert send_now().count("retrying") == 1
    email = fresh(email)
    assert (email.status, email.attempts) == ("retrying", 1)
    assert "451" in email.last_error
    # the email queue's backoff: 30 s × 2⁰, jittered between half and all of it
    assert 14 <= (email.available_at - email.claimed_at).total_seconds() <= 31
    assert Notification.objects.get(pk=email.notification_id).email_status == "queued"
    assert smtp_mailer.received == []


def test_a_retrying_email_is_not_claimed_before_its_backoff_ends(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("451 4.3.0 Try again later")
    notified_email()
    send_now()
    assert send_now().outcomes == []


def test_a_due_retry_goes_back_in_line_and_is_delivered_once(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("451 4.3.0 Try again later")
    email = notified_email()
    send_now()
    OutboundEmail.objects.filter(pk=email.pk).update(available_at=fresh(email).claimed_at)  # the backoff is over
    assert send_now().count("sent") == 1
    email = fresh(email)
    assert (email.status, email.attempts, email.last_error) == ("sent", 2, "")
    assert len(smtp_mailer.received) == 1


def test_transient_failure_on_the_queues_last_attempt_fails_the_row(db, smtp_mailer, notified_email):
    smtp_mailer.handler.data_replies.append("421 4.3.2 Service shutting down")
    email = notified_email()
    OutboundEmail.objects.filter(pk=email.pk).update(attempts=5)  # this is attempt 6 of 6
    assert send_now().count("failed") == 1
    email = fresh(email)
    assert (email.status, email.attempts, email.delivery_unknown) == ("failed", 6, False)
    assert "421" in email.last_error
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"


def test_refused_connection_is_transient(db, settings, make_email):
    from tests.notifications.email.conftest import free_port

    settings.MAILERS = {
        "default": {
            "BACKEND": "notifications.mime.SMTPBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "use_tls": False, "timeout": 5},
        }
    }
    email = make_email()
    send_now()
    email = fresh(email)
    assert email.status == "retrying"
    assert "ConnectionRefusedError" in email.last_error or "Connect" in email.last_error


def test_missing_template_data_fails_the_row_naming_the_field(db, smtp_mailer, make_email):
    email = make_email(template="filing-reminder", context={"filingType": "VAT Return"})
    send_now()
    email = fresh(email)
    assert (email.status, email.attempts) == ("failed", 0)
    assert "data field 'period' is missing" in email.last_error
    assert smtp_mailer.received == [] and smtp_mailer.handler.sessions == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "Hi\r\nBcc: victim@example.net"},
        {"to_name": "Pat\nBcc: victim@example.net"},
        {"to_email": "pat@example.com\nBcc: victim@example.net"},
    ],
)
def test_line_break_in_a_header_is_refused_at_send(db, smtp_mailer, make_email, fields):
    email = make_email(**fields)
    send_now()
    email = fresh(email)
    assert email.status == "failed"
    assert "header injection" in email.last_error
    assert smtp_mailer.received == []


def test_one_bad_email_does_not_stop_the_others(db, smtp_mailer, make_email):
    bad = make_email(subject="Hi\r\nBcc: victim@example.net")
    good = [make_email() for _ in range(3)]
    run = send_now()
    assert (run.count("sent"), run.count("failed")) == (3, 1)
    assert fresh(bad).status == "failed"
    assert {fresh(email).status for email in good} == {"sent"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject", "Hi\r\nBcc: victim@example.net"), ("recipient_name", "Pat\nBcc: x@example.net")],
)
def test_line_break_in_a_header_is_refused_at_enqueue(db, tenant, field, value):
    request = {
        "recipient_email": "pat@example.com",
        "recipient_name": "Pat",
        "subject": "Hello",
        "template": "custom",
        "data": {"body": "Hi"},
        field: value,
    }
    with pytest.raises(InvalidEmailRequest, match=field):
        email_enqueue(tenant_id=tenant.pk, **request)
    assert not OutboundEmail.objects.exists()


def test_enqueue_refuses_data_missing_a_template_field(db, tenant):
    with pytest.raises(InvalidEmailRequest, match="'daysLeft' is missing"):
        email_enqueue(
            tenant_id=tenant.pk,
            recipient_email="pat@example.com",
            recipient_name="Pat",
            subject="Expiring",
            template="document-expiry",
            data={"documentTitle": "TIN", "documentType": "TIN", "clientName": "ACME", "expiresOn": "2026-12-01"},
        )


def test_enqueue_refuses_an_unknown_priority_naming_it(db, tenant):
    with pytest.raises(InvalidEmailRequest, match="priority: must be one of urgent, high, normal, low"):
        email_enqueue(
            tenant_id=tenant.pk,
            recipient_email="pat@example.com",
            recipient_name="Pat",
            subject="Hello",
            template="custom",
            data={"body": "Hi"},
            priority="asap",
        )
    assert not OutboundEmail.objects.exists()


def test_a_row_left_sending_by_a_lost_worker_is_never_claimed_again(db, smtp_mailer, make_email):
    make_email(status="sending", attempts=1)
    assert send_now().outcomes == []
    assert smtp_mailer.handler.data_commands == 0


@pytest.mark.parametrize("password", [SMTP_PASSWORD, "wrong-password"])
def test_no_password_or_body_in_the_logs(db, settings, smtp_server_with_auth, make_email, caplog, password):
    settings.MAILERS = {"default": smtp_server_with_auth.mailer(username=SMTP_USER, password=password)}
    make_email(context={"body": "secret-body-marker-7731"})
    caplog.set_level(logging.DEBUG)
    with contextlib.suppress(Exception):
        send_now()
    # Everything this process logged, less the test SMTP server's own debug log ("mail.log").
    records = [r for r in caplog.records if not r.name.startswith("mail.log")]
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in records)
    assert any(r.name == "notifications.email" for r in records), "the send logged nothing"
    assert password not in logged
    assert "secret-body-marker-7731" not in logged


def test_a_wrong_smtp_password_is_retried_not_failed(db, settings, smtp_server_with_auth, make_email):
    settings.MAILERS = {"default": smtp_server_with_auth.mailer(username=SMTP_USER, password="wrong-password")}
    email = make_email()
    send_now()
    email = fresh(email)
    assert email.status == "retrying"
    assert "authentication" in email.last_error.lower()


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"])
def test_other_line_separators_in_headers_become_spaces_and_the_email_is_sent(db, smtp_mailer, make_email, separator):
    make_email(subject=f"ACME{separator}Corp: TIN expires", to_name=f"Pat{separator}Person")
    assert send_now().count("sent") == 1
    message = smtp_mailer.received[0].message
    assert message["Subject"] == "ACME Corp: TIN expires"
    assert message["To"].addresses[0].display_name == "Pat Person"


def test_a_message_that_cannot_be_built_fails_at_once_not_as_transient(db, smtp_mailer, make_email):
    email = make_email(to_email="pät@example.com")  # a non-ASCII local part: no header can carry it
    send_now()
    email = fresh(email)
    assert (email.status, email.attempts) == ("failed", 0)
    assert "cannot be built" in email.last_error
    assert smtp_mailer.received == []


# --- Suppression ---------------------------------------------------------------------------------


def test_smtp_550_no_such_user_suppresses_the_address_for_every_tenant(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.1.1 <pat@example.com>: Recipient address rejected: User unknown")
    email = notified_email()
    send_now()
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.tenant_id) == (email.to_email.lower(), "bounced", None)
    assert "User unknown" in suppression.description


def test_smtp_550_for_a_policy_reason_suppresses_nothing(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected as spam by content filter")
    notified_email()
    send_now()
    assert not Suppression.objects.exists()


def test_email_to_a_suppressed_address_is_not_handed_to_the_server(db, smtp_mailer, notified_email):
    email = notified_email()
    Suppression.objects.create(email=email.to_email.upper(), reason="bounced")
    assert send_now().count("suppressed") == 1
    email = fresh(email)
    assert (email.status, email.attempts) == ("suppressed", 0)
    assert Notification.objects.get(pk=email.notification_id).email_status == "suppressed"
    assert smtp_mailer.handler.data_commands == 0 and smtp_mailer.handler.sessions == 0


def test_a_suppression_for_another_tenant_does_not_stop_the_email(db, smtp_mailer, notified_email):
    from tests.factories import TenantFactory

    email = notified_email()
    Suppression.objects.create(email=email.to_email, reason="complained", tenant=TenantFactory())
    assert send_now().count("sent") == 1
    assert fresh(email).status == "sent"
