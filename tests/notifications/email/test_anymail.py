"""The provider path: anymail's test backend stands in for SES, Postmark or Mailgun."""

from __future__ import annotations

import pytest
from django.core import mail

from notifications.dispatcher import emails_send
from notifications.models import Notification
from tests.notifications.email.conftest import StatusTestBackend


@pytest.fixture
def anymail_test_backend(settings):
    settings.MAILERS = {"default": {"BACKEND": "anymail.backends.test.EmailBackend"}}


@pytest.fixture
def scripted_status(settings):
    def use(status: int) -> None:
        StatusTestBackend.STATUS = status
        settings.MAILERS = {"default": {"BACKEND": "tests.notifications.email.conftest.StatusTestBackend"}}

    return use


def test_provider_send_records_the_providers_message_id(db, anymail_test_backend, notified_email):
    email = notified_email()
    assert emails_send().count("sent") == 1
    email.refresh_from_db()
    sent = mail.outbox[0]
    assert email.status == "sent"
    assert email.message_id == str(sent.anymail_status.message_id)
    assert Notification.objects.get(pk=email.notification_id).email_status == "sent"


def test_provider_gets_both_parts_and_the_kgc_headers(db, anymail_test_backend, notified_email):
    email = notified_email()
    emails_send()
    params = mail.outbox[0].anymail_test_params
    assert params["extra_headers"] == {
        "Message-ID": f"<outbound-{email.pk}.{email.tenant_id}@kgc-compliance.com>",
        "X-KGC-Tenant": str(email.tenant_id),
        "X-KGC-Notification": str(email.notification_id),
    }
    assert "TIN Certificate" in params["text_body"]
    assert "<html" in params["html_body"]
    assert params["metadata"] == {"outbound_email_id": str(email.pk), "tenant_id": str(email.tenant_id)}
    assert params["tags"] == ["document-expiry"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_provider_throttling_or_outage_is_retried(db, scripted_status, make_email, status):
    scripted_status(status)
    email = make_email()
    emails_send()
    email.refresh_from_db()
    assert email.status == "retrying"
    assert f"API {status}" in email.last_error


@pytest.mark.parametrize("status", [400, 422])
def test_provider_refusal_fails_at_once(db, scripted_status, make_email, status):
    scripted_status(status)
    email = make_email()
    emails_send()
    email.refresh_from_db()
    assert email.status == "failed"
    assert "scripted provider reply" in email.last_error
