"""The send job against a real SMTP server (aiosmtpd): parts, headers, outcomes, never twice."""

from __future__ import annotations

import contextlib
import logging
import threading

import pytest
from django.db import connection

from notifications.delivery import (
    EmailBusy,
    EmailDeliveryUnknown,
    EmailPermanentError,
    EmailTransientError,
    SendOutcome,
    email_send,
    mail_connections_close,
)
from notifications.exceptions import InvalidEmailRequest
from notifications.models import Notification, OutboundEmail, Suppression
from notifications.services import email_enqueue
from tests.notifications.email.conftest import SMTP_PASSWORD, SMTP_USER


def send(email: OutboundEmail, **options) -> str:
    return email_send(outbound_email_id=email.pk, tenant_id=email.tenant_id, **options)


@pytest.fixture
def delivered(db, smtp_mailer, notified_email):
    """One notification email sent through the SMTP server: (row, what the server received)."""
    email = notified_email()
    assert send(email) == SendOutcome.SENT
    email.refresh_from_db()
    return email, smtp_mailer.received


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
    assert message["From"] == "noreply@kgc-compliance.com"


def test_envelope_goes_to_the_one_recipient(delivered):
    email, received = delivered
    assert [(r.mail_from, r.rcpt_tos) for r in received] == [("noreply@kgc-compliance.com", [email.to_email])]


def test_row_records_sent_with_message_id_and_time(delivered):
    email, _ = delivered
    assert (email.status, email.attempts, email.last_error) == ("sent", 1, "")
    assert email.message_id == f"<outbound-{email.pk}.{email.tenant_id}@kgc-compliance.com>"
    assert email.sent_at is not None


def test_notification_mirrors_sent(delivered):
    email, _ = delivered
    assert Notification.objects.get(pk=email.notification_id).email_status == "sent"


def test_each_recipient_gets_a_message_of_their_own(db, smtp_mailer, tenant, member_of, notified_email):
    emails = [notified_email(key=f"expiry:doc-1:30:{n}", user=member_of(tenant, "manager")) for n in range(3)]
    for email in emails:
        send(email)
    assert sorted(r.rcpt_tos[0] for r in smtp_mailer.received) == sorted(e.to_email for e in emails)
    for received in smtp_mailer.received:
        assert [address.addr_spec for address in received.message["To"].addresses] == received.rcpt_tos


def test_a_second_run_after_success_sends_nothing(delivered):
    email, received = delivered
    assert send(email) == SendOutcome.ALREADY_SENT
    assert len(received) == 1


def test_consecutive_sends_share_one_smtp_session(db, smtp_mailer, make_email):
    for _ in range(3):
        send(make_email())
    assert (len(smtp_mailer.received), smtp_mailer.handler.sessions) == (3, 1)


def test_a_failed_session_is_not_reused(db, smtp_mailer, make_email):
    smtp_mailer.handler.rcpt_replies.append("451 4.3.0 Try again later")
    with pytest.raises(EmailTransientError):
        send(make_email(), final_attempt=False)
    send(make_email())
    assert smtp_mailer.handler.sessions == 2


def test_recipient_refused_with_550_fails_at_once(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.1.1 No such user here")
    email = notified_email()
    with pytest.raises(EmailPermanentError, match="550"):
        send(email, final_attempt=False)
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("failed", 1)
    assert "550 5.1.1 No such user here" in email.last_error
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"
    assert smtp_mailer.received == []


def test_transient_451_puts_the_row_back_for_the_retry(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("451 4.3.0 Try again later")
    email = notified_email()
    with pytest.raises(EmailTransientError):
        send(email, final_attempt=False)
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("queued", 1)
    assert "451" in email.last_error
    assert Notification.objects.get(pk=email.notification_id).email_status == "queued"


def test_transient_failure_on_the_final_attempt_fails_the_row(db, smtp_mailer, notified_email):
    smtp_mailer.handler.data_replies.append("421 4.3.2 Service shutting down")
    email = notified_email()
    with pytest.raises(EmailTransientError):
        send(email, final_attempt=True)
    email.refresh_from_db()
    assert email.status == "failed"
    assert "421" in email.last_error
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"


def test_retry_after_a_451_delivers_once(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("451 4.3.0 Try again later")
    email = notified_email()
    with pytest.raises(EmailTransientError):
        send(email, final_attempt=False)
    assert send(email) == SendOutcome.SENT
    assert len(smtp_mailer.received) == 1
    email.refresh_from_db()
    assert (email.status, email.attempts, email.last_error) == ("sent", 2, "")


def test_refused_connection_is_transient(db, settings, make_email):
    from tests.notifications.email.conftest import free_port

    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "use_tls": False, "timeout": 5},
        }
    }
    email = make_email()
    with pytest.raises(EmailTransientError, match="ConnectionRefusedError"):
        send(email, final_attempt=False)
    email.refresh_from_db()
    assert email.status == "queued"


def test_missing_template_data_fails_the_row_naming_the_field(db, smtp_mailer, make_email):
    email = make_email(template="filing-reminder", context={"filingType": "VAT Return"})
    with pytest.raises(EmailPermanentError, match="'period'"):
        send(email, final_attempt=False)
    email.refresh_from_db()
    assert email.status == "failed"
    assert "data field 'period' is missing" in email.last_error
    assert smtp_mailer.received == []


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
    with pytest.raises(EmailPermanentError, match="header injection"):
        send(email)
    email.refresh_from_db()
    assert email.status == "failed"
    assert smtp_mailer.received == []


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


def test_row_left_sending_by_a_lost_worker_is_failed_not_sent_again(db, smtp_mailer, make_email):
    # What a worker that died between claiming and recording leaves behind (no lock held).
    email = make_email(status="sending", attempts=1)
    with pytest.raises(EmailDeliveryUnknown):
        send(email)
    email.refresh_from_db()
    assert email.status == "failed"
    assert email.last_error.startswith("delivery unknown")
    assert smtp_mailer.handler.data_commands == 0


def _in_thread(target, results: list, *args) -> threading.Thread:
    def run() -> None:
        try:
            results.append(target(*args))
        except Exception as exc:
            results.append(exc)
        finally:
            mail_connections_close()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_second_worker_during_the_send_sends_nothing(smtp_mailer, make_email):
    smtp_mailer.handler.hold = threading.Event()
    email = make_email()
    first: list = []
    thread = _in_thread(send, first, email)
    assert smtp_mailer.handler.in_data.wait(30), "the first send never reached DATA"
    with pytest.raises(EmailBusy):
        send(email, final_attempt=False)
    assert send(email, final_attempt=True) == SendOutcome.IN_PROGRESS
    smtp_mailer.handler.hold.set()
    thread.join(30)
    assert first == [SendOutcome.SENT]
    assert smtp_mailer.handler.data_commands == 1
    assert len(smtp_mailer.received) == 1


@pytest.mark.django_db(transaction=True)
def test_workers_racing_on_one_row_send_one_message(smtp_mailer, make_email):
    email = make_email()
    barrier = threading.Barrier(5)
    results: list = []

    def race() -> str:
        barrier.wait(10)
        return send(email, final_attempt=True)

    threads = [_in_thread(race, results) for _ in range(5)]
    for thread in threads:
        thread.join(60)
    assert results.count(SendOutcome.SENT) == 1
    assert set(results) <= {SendOutcome.SENT, SendOutcome.IN_PROGRESS, SendOutcome.ALREADY_SENT}, results
    assert len(smtp_mailer.received) == 1


@pytest.mark.parametrize("password", [SMTP_PASSWORD, "wrong-password"])
def test_no_password_or_body_in_the_logs(db, settings, smtp_server_with_auth, make_email, caplog, password):
    settings.MAILERS = {"default": smtp_server_with_auth.mailer(username=SMTP_USER, password=password)}
    email = make_email(context={"body": "secret-body-marker-7731"})
    caplog.set_level(logging.DEBUG)
    with contextlib.suppress(EmailTransientError):  # the wrong password fails the send
        send(email, final_attempt=False)
    # Everything this process logged, less the test SMTP server's own debug log ("mail.log").
    records = [r for r in caplog.records if not r.name.startswith("mail.log")]
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in records)
    assert any(r.name == "notifications.email" for r in records), "the send logged nothing"
    assert password not in logged
    assert "secret-body-marker-7731" not in logged


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"])
def test_other_line_separators_in_headers_become_spaces_and_the_email_is_sent(db, smtp_mailer, make_email, separator):
    email = make_email(subject=f"ACME{separator}Corp: TIN expires", to_name=f"Pat{separator}Person")
    assert send(email, final_attempt=False) == SendOutcome.SENT
    message = smtp_mailer.received[0].message
    assert message["Subject"] == "ACME Corp: TIN expires"
    assert message["To"].addresses[0].display_name == "Pat Person"


def test_a_message_that_cannot_be_built_fails_at_once_not_as_transient(db, smtp_mailer, make_email):
    email = make_email(to_email="pät@example.com")  # a non-ASCII local part: no header can carry it
    with pytest.raises(EmailPermanentError, match="cannot be built"):
        send(email, final_attempt=False)
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("failed", 0)
    assert "cannot be built" in email.last_error
    assert smtp_mailer.received == []


# --- Suppression ---------------------------------------------------------------------------------


def test_smtp_550_no_such_user_suppresses_the_address_for_every_tenant(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.1.1 <pat@example.com>: Recipient address rejected: User unknown")
    email = notified_email()
    with pytest.raises(EmailPermanentError):
        send(email, final_attempt=False)
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.tenant_id) == (email.to_email.lower(), "bounced", None)


def test_smtp_550_for_a_policy_reason_suppresses_nothing(db, smtp_mailer, notified_email):
    smtp_mailer.handler.rcpt_replies.append("550 5.7.1 Message rejected as spam by content filter")
    with pytest.raises(EmailPermanentError):
        send(notified_email(), final_attempt=False)
    assert not Suppression.objects.exists()


def test_email_to_a_suppressed_address_is_not_handed_to_the_server(db, smtp_mailer, notified_email):
    email = notified_email()
    Suppression.objects.create(email=email.to_email.upper(), reason="bounced")
    assert send(email) == SendOutcome.SUPPRESSED
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("suppressed", 0)
    assert Notification.objects.get(pk=email.notification_id).email_status == "suppressed"
    assert smtp_mailer.handler.data_commands == 0 and smtp_mailer.handler.sessions == 0


def test_a_suppression_for_another_tenant_does_not_stop_the_email(db, smtp_mailer, notified_email):
    from tests.factories import TenantFactory

    email = notified_email()
    Suppression.objects.create(email=email.to_email, reason="complained", tenant=TenantFactory())
    assert send(email) == SendOutcome.SENT


@pytest.mark.django_db(transaction=True)
def test_a_last_attempt_that_finds_the_email_being_sent_has_it_looked_at_again_later(smtp_mailer, make_email):
    """Should the sending worker die before recording, the later look fails the row as
    "delivery unknown": the email never stays in "sending" with no job left to notice."""
    from procrastinate.contrib.django.models import ProcrastinateJob

    from notifications.services import SEND_EMAIL_TASK

    smtp_mailer.handler.hold = threading.Event()
    email = make_email()
    first: list = []
    thread = _in_thread(send, first, email)
    assert smtp_mailer.handler.in_data.wait(30), "the first send never reached DATA"
    assert send(email, final_attempt=True) == SendOutcome.IN_PROGRESS
    smtp_mailer.handler.hold.set()
    thread.join(30)
    [recheck] = ProcrastinateJob.objects.filter(task_name=SEND_EMAIL_TASK, args__outbound_email_id=email.pk)
    assert recheck.status == "todo" and recheck.scheduled_at is not None
