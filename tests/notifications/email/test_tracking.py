"""Delivery tracking webhooks: basic auth required, events recorded once, bounces fail the email."""

from __future__ import annotations

import base64
import json

import pytest

from notifications.models import EmailEvent, Notification, OutboundEmail, Suppression

URL = "/anymail/postmark/tracking/"
SECRET = "kgc-hooks:s3cret-value"

# WhiteNoise warns when collectstatic has not run (a test checkout); the webhook works without it.
pytestmark = pytest.mark.filterwarnings("ignore:No directory at:UserWarning")


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}


@pytest.fixture
def sent_email(db, notified_email):
    email = notified_email()
    OutboundEmail.objects.filter(pk=email.pk).update(status="sent", message_id="pm-0001")
    Notification.objects.filter(pk=email.notification_id).update(email_status="sent")
    email.refresh_from_db()
    return email


def auth(secret: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def delivery(message_id: str = "pm-0001") -> dict:
    return {
        "RecordType": "Delivery",
        "MessageID": message_id,
        "Recipient": "pat@example.com",
        "DeliveredAt": "2026-11-29T10:00:00Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }


def bounce(event_id: int = 4323372036854775807) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": "pm-0001",
        "Email": "pat@example.com",
        "BouncedAt": "2026-11-29T10:00:05Z",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    }


def post(client, payload: dict, **headers: str):
    return client.post(URL, data=json.dumps(payload), content_type="application/json", **headers)


def test_webhook_without_credentials_is_refused(client, sent_email):
    response = post(client, bounce())
    assert response.status_code == 400
    assert not EmailEvent.objects.exists()
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"


def test_webhook_with_wrong_credentials_is_refused(client, sent_email):
    response = post(client, bounce(), **auth("kgc-hooks:guess"))
    assert response.status_code == 400
    assert not EmailEvent.objects.exists()


def test_delivered_event_is_recorded_against_the_email(client, sent_email):
    response = post(client, delivery(), **auth())
    assert response.status_code == 200
    event = EmailEvent.objects.get()
    assert (event.outbound_email_id, event.event_type, event.tenant_id) == (
        sent_email.pk,
        "delivered",
        sent_email.tenant_id,
    )
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"


def test_bounce_fails_the_email_and_its_notification(client, sent_email):
    post(client, bounce(), **auth())
    sent_email.refresh_from_db()
    assert sent_email.status == "failed"
    assert sent_email.last_error.startswith("bounced (Postmark)")
    assert "550 5.1.1" in sent_email.last_error
    assert Notification.objects.get(pk=sent_email.notification_id).email_status == "failed"


def _state(email: OutboundEmail) -> tuple:
    email.refresh_from_db()
    notification = Notification.objects.get(pk=email.notification_id)
    events = list(EmailEvent.objects.values_list("pk", "event_type"))
    return email.status, email.last_error, notification.email_status, events


def test_repeated_bounce_changes_nothing(client, sent_email):
    post(client, bounce(), **auth())
    # A second processing of the bounce would write its reason over this.
    OutboundEmail.objects.filter(pk=sent_email.pk).update(last_error="looked at by an operator")
    before = _state(sent_email)
    response = post(client, bounce(), **auth())
    assert response.status_code == 200
    assert _state(sent_email) == before


def test_repeated_event_without_a_provider_id_is_recorded_once(client, sent_email):
    post(client, delivery(), **auth())
    post(client, delivery(), **auth())
    assert EmailEvent.objects.count() == 1


def test_event_for_an_unknown_message_is_ignored(client, sent_email):
    response = post(client, delivery(message_id="someone-else"), **auth())
    assert response.status_code == 200
    assert not EmailEvent.objects.exists()


# --- Suppression -------------------------------------------------------------------------------


def complaint() -> dict:
    return {
        "RecordType": "SpamComplaint",
        "ID": 4323372036854775801,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "MessageID": "pm-0001",
        "Email": "pat@example.com",
        "BouncedAt": "2026-11-29T10:00:05Z",
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
    }


def test_hard_bounce_suppresses_the_address_for_every_tenant(client, sent_email):
    post(client, bounce(), **auth())
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.tenant_id) == ("pat@example.com", "bounced", None)
    assert "550 5.1.1" in suppression.description


def test_soft_bounce_suppresses_nothing(client, sent_email):
    post(client, {**bounce(), "Type": "SoftBounce", "TypeCode": 4096}, **auth())
    assert not Suppression.objects.exists()


def test_complaint_suppresses_the_address_for_that_tenant(client, sent_email):
    post(client, complaint(), **auth())
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.tenant_id) == (
        "pat@example.com",
        "complained",
        sent_email.tenant_id,
    )


def test_repeated_bounce_suppresses_once(client, sent_email):
    post(client, bounce(), **auth())
    post(client, bounce(event_id=1), **auth())
    assert Suppression.objects.count() == 1
