"""Emails to members carry one-click unsubscribe (RFC 8058, RFC 2369) and footer links, as a
real SMTP server (aiosmtpd) receives them; digests go out the same way."""

from __future__ import annotations

import re

import pytest

from notifications.digests import digests_send
from notifications.dispatcher import emails_send
from notifications.models import OutboundEmail
from notifications.preferences import LinkSubject, preferences_token_read, unsubscribe_token_read
from tests.notifications.digests.conftest import document_draft, filing_draft

PUBLIC = "https://jobs.example.com"


@pytest.fixture
def public_url(settings):
    settings.KGC_PUBLIC_URL = PUBLIC
    return PUBLIC


def send(email: OutboundEmail) -> str:
    [outcome] = emails_send().outcomes
    assert outcome.email_id == email.pk
    return outcome.status


def token_of(url: str, kind: str) -> str:
    match = re.fullmatch(rf"{re.escape(PUBLIC)}/notifications/{kind}/([^/\s>]+)", url)
    assert match, url
    return match.group(1)


@pytest.fixture
def received_notification_email(db, smtp_mailer, notified_email):
    email = notified_email()
    assert send(email) == "sent"
    return email, smtp_mailer.received[0].message


def test_a_notification_email_carries_one_click_unsubscribe_for_its_kind(public_url, received_notification_email):
    email, message = received_notification_email
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = message["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    subject = unsubscribe_token_read(token_of(url, "unsubscribe"))
    recipient = email.notification.recipient_id
    assert subject == LinkSubject(user_id=recipient, tenant_id=email.tenant_id, kind="document_expiry")


def test_the_footer_links_to_the_preferences_page_and_to_unsubscribe(public_url, received_notification_email):
    email, message = received_notification_email
    text = message.get_body(("plain",)).get_content()
    preferences = re.search(r"Choose which emails you get, and when: (\S+)", text).group(1)
    assert preferences_token_read(token_of(preferences, "preferences")) == LinkSubject(
        user_id=email.notification.recipient_id, tenant_id=email.tenant_id
    )
    html = message.get_body(("html",)).get_content()
    assert "Unsubscribe from document expiry emails" in html and preferences.replace("&", "&amp;") in html


@pytest.fixture
def no_public_url(settings):
    settings.KGC_PUBLIC_URL = ""


def test_without_a_public_url_there_are_no_unsubscribe_headers_nor_links(no_public_url, received_notification_email):
    _, message = received_notification_email
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert "Notification settings are in your account." in message.get_body(("plain",)).get_content()


def test_an_email_to_an_address_of_no_member_has_no_unsubscribe_link(db, public_url, smtp_mailer, make_email):
    send(make_email())
    assert smtp_mailer.received[0].message["List-Unsubscribe"] is None


@pytest.mark.django_db
def test_a_digest_arrives_grouped_with_links_and_unsubscribes_from_everything(
    public_url, settings, smtp_mailer, tenant, reader, waiting, digest_day
):
    settings.KGC_APP_URL = "https://app.example.com"
    ana = reader()
    waiting(
        document_draft(ana, client_id=4, client_name="Blue River"),
        filing_draft(ana, client_id=4, client_name="Blue River", urgency="HIGH"),
    )
    digests_send(tenant=tenant, as_of=digest_day)
    assert send(OutboundEmail.objects.get()) == "sent"

    message = smtp_mailer.received[0].message
    assert message["Subject"] == f"1 document expiring, 1 filing due: {tenant.name}"
    text = message.get_body(("plain",)).get_content()
    assert text.index("DOCUMENTS EXPIRING (1)") < text.index("FILINGS DUE (1)")
    assert "https://app.example.com/filings/" in text  # items link to the web app, not to this service
    assert f"{PUBLIC}/clients/" not in text
    url = message["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    assert unsubscribe_token_read(token_of(url, "unsubscribe")).kind == "all"
    assert "Unsubscribe from all notification emails" in message.get_body(("html",)).get_content()
