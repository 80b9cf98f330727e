"""Which SMTP replies and provider bounces mean the address does not exist, and adding a suppression."""

from __future__ import annotations

import smtplib

import pytest
from anymail.signals import AnymailTrackingEvent

from notifications.models import Suppression
from notifications.suppressions import (
    bounce_is_hard,
    send_error_says_address_gone,
    smtp_reply_says_address_gone,
    suppression_add,
)


@pytest.mark.parametrize(
    ("code", "text", "gone"),
    [
        (550, "5.1.1 <pat@example.com>: Recipient address rejected: User unknown", True),
        (550, "5.1.1 The email account that you tried to reach does not exist.", True),
        (550, "No such user here", True),
        (553, "5.1.2 Bad destination system address", True),
        (556, "5.1.10 Recipient address has null MX", True),
        (550, "Requested action not taken: mailbox unavailable; invalid recipient", True),
        (550, "5.7.1 Message rejected as spam by content filter", False),
        (554, "5.7.1 Relay access denied", False),
        (552, "5.2.2 Mailbox full", False),
        (450, "4.1.1 User unknown, try again later", False),  # a 4xx is never final
        (421, "Service not available", False),
    ],
)
def test_smtp_reply_says_address_gone(code, text, gone):
    assert smtp_reply_says_address_gone(code=code, text=text) is gone


def test_refused_recipient_at_rcpt_is_read_from_the_exception():
    refused = smtplib.SMTPRecipientsRefused({"pat@example.com": (550, b"5.1.1 User unknown")})
    assert send_error_says_address_gone(refused) is True


def test_an_error_that_is_no_smtp_reply_says_nothing():
    assert send_error_says_address_gone(ConnectionRefusedError()) is False


def _bounce(**fields) -> AnymailTrackingEvent:
    return AnymailTrackingEvent(event_type="bounced", **fields)


@pytest.mark.parametrize(
    ("event", "hard"),
    [
        (_bounce(esp_event={"Type": "HardBounce"}), True),
        (_bounce(esp_event={"Type": "SoftBounce"}), False),
        (_bounce(esp_event={"Type": "Transient"}), False),
        (_bounce(esp_event={"bounce": {"bounceType": "Permanent"}}), True),
        (_bounce(esp_event={"bounce": {"bounceType": "Transient"}}), False),
        (_bounce(mta_response="smtp; 550 5.1.1 user unknown"), True),
        (_bounce(mta_response="452 4.2.2 mailbox full"), False),
        (_bounce(), True),
    ],
)
def test_bounce_is_hard(event, hard):
    assert bounce_is_hard(event) is hard


@pytest.mark.django_db
def test_suppression_is_added_once_per_address_and_tenant_every_tenant_included(tenant):
    assert suppression_add(email=" Pat@Example.com ", reason="bounced", tenant_id=None) is True
    assert suppression_add(email="pat@example.com", reason="bounced", tenant_id=None) is False
    assert suppression_add(email="pat@example.com", reason="complained", tenant_id=tenant.pk) is True
    assert sorted(Suppression.objects.values_list("email", "tenant_id"), key=str) == sorted(
        [("pat@example.com", None), ("pat@example.com", tenant.pk)], key=str
    )


@pytest.mark.django_db
def test_an_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown suppression reason"):
        suppression_add(email="pat@example.com", reason="annoyed", tenant_id=None)
