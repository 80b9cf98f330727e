"""The pure rules of email dispatch, table by table (no database)."""

from __future__ import annotations

import smtplib
import ssl

import pytest
import requests
import urllib3
from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)

from notifications.delivery import header_errors, message_id_for
from notifications.rendering import SAMPLE_DATA, TEMPLATE_FIELDS, EmailDataError, template_context
from notifications.tracking import event_key
from notifications.transports import provider_failure_classify, smtp_refusal


def api_error(status: int) -> AnymailRequestsAPIError:
    response = requests.Response()
    response.status_code = status
    response.reason = "reason"
    response._content = b'{"Message": "provider says no"}'
    return AnymailRequestsAPIError("send failed", response=response, esp_name="Postmark")


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"a@example.com": (451, b"4.3.0 try later")}), False),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"5.1.1 no such user")}), True),
        (smtplib.SMTPDataError(452, b"4.3.1 insufficient storage"), False),
        (smtplib.SMTPDataError(554, b"5.7.1 rejected as spam"), True),
        (smtplib.SMTPSenderRefused(421, b"4.7.0 try again", "noreply@kgc.example"), False),
        (smtplib.SMTPSenderRefused(553, b"5.1.8 sender rejected", "noreply@kgc.example"), True),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), False),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
        (ConnectionResetError(104, "Connection reset by peer"), False),
        (TimeoutError("timed out"), False),
        (api_error(429), False),
        (api_error(500), False),
        (api_error(503), False),
        (api_error(400), True),
        (api_error(422), True),
        (AnymailAPIError("no response", esp_name="Mailgun"), False),
        (AnymailRecipientsRefused(), True),
        (AnymailInvalidAddress("Invalid email address 'bob'"), True),
    ],
)
def test_send_failure_is_classified_permanent_or_transient(error, permanent):
    assert provider_failure_classify(error).kind == ("failed" if permanent else "retry")


def test_failure_reason_quotes_the_smtp_reply():
    reason = provider_failure_classify(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"5.1.1 no such user")}))
    assert reason.reason == "SMTP recipient refused: 550 5.1.1 no such user"


def test_failure_reason_quotes_the_provider_status_and_reply():
    assert provider_failure_classify(api_error(422)).reason == 'Postmark API 422: {"Message": "provider says no"}'


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (requests.ReadTimeout("read timed out"), "unknown"),
        (requests.ConnectTimeout("connect timed out"), "retry"),
        (requests.ConnectionError("Connection aborted: RemoteDisconnected"), "unknown"),
        (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(12 bytes read)"), "unknown"),
        # urllib3's TLS errors: a certificate or a handshake refused nothing went out; one
        # while the answer was read came after the request
        (
            requests.exceptions.SSLError(
                urllib3.exceptions.MaxRetryError(
                    None, "/email", urllib3.exceptions.SSLError(ssl.SSLCertVerificationError(1, "verify failed"))
                )
            ),
            "retry",
        ),
        (requests.exceptions.SSLError("[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure"), "retry"),
        (requests.exceptions.SSLError("[SSL: WRONG_VERSION_NUMBER] wrong version number"), "retry"),
        (
            requests.exceptions.SSLError("[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol"),
            "unknown",
        ),
    ],
)
def test_a_provider_request_lost_after_it_went_out_is_delivery_unknown(error, kind):
    assert provider_failure_classify(error).kind == kind


@pytest.mark.parametrize(
    ("code", "text", "stage", "kind", "gone"),
    [
        (451, "4.3.0 try later", "recipient", "retry", False),
        (550, "5.1.1 no such user", "recipient", "failed", True),
        (550, "5.7.1 rejected as spam", "recipient", "failed", False),
        (552, "5.2.2 mailbox full", "data", "failed", False),
        (550, "5.1.1 user unknown", "sender", "failed", False),
        (421, "4.7.0 closing", "data", "retry", False),
    ],
)
def test_an_smtp_refusal_is_retried_or_failed_and_says_whether_the_address_is_gone(code, text, stage, kind, gone):
    result = smtp_refusal(code, text, stage=stage)
    assert (result.kind, result.address_gone) == (kind, gone)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"subject": "Hello", "to_name": "Pat", "to_email": "pat@example.com"}, []),
        ({"subject": "Hello\r\nBcc: x@evil.example", "to_name": "Pat", "to_email": "pat@example.com"}, ["subject"]),
        ({"subject": "Hello", "to_name": "Pat\nX-Evil: 1", "to_email": "pat@example.com"}, ["recipient_name"]),
        ({"subject": "Hello", "to_name": "Pat", "to_email": "pat@example.com\r"}, ["recipient_email"]),
    ],
)
def test_line_breaks_in_headers_are_found(fields, bad):
    assert header_errors(**fields) == bad


@pytest.mark.parametrize(
    ("from_email", "expected"),
    [
        ("noreply@kgc-compliance.com", "<outbound-42.7@kgc-compliance.com>"),
        ("KGC Compliance Cloud <alerts@mail.kgc.example>", "<outbound-42.7@mail.kgc.example>"),
        ("not an address", "<outbound-42.7@kgc.invalid>"),
    ],
)
def test_message_id_is_derived_from_the_row_and_the_sender_domain(from_email, expected):
    assert message_id_for(outbound_email_id=42, tenant_id=7, from_email=from_email) == expected


@pytest.mark.parametrize(
    ("template", "field"), [(template, field) for template, fields in TEMPLATE_FIELDS.items() for field in fields]
)
def test_missing_template_field_is_named(template, field):
    data = {key: value for key, value in SAMPLE_DATA[template].items() if key != field}
    with pytest.raises(EmailDataError) as raised:
        template_context(template, data)
    assert raised.value.field == field
    assert f"'{field}'" in str(raised.value)


@pytest.mark.parametrize(
    ("template", "field", "value"),
    [
        ("document-expiry", "expiresOn", "next tuesday"),
        ("document-expiry", "daysLeft", "30"),
        ("filing-reminder", "dueDate", 20261206),
        ("compliance-alert", "issues", "Missing TIN"),
        ("compliance-alert", "complianceScore", True),
        ("custom", "body", {"html": "<b>hi</b>"}),
    ],
)
def test_malformed_template_field_is_named(template, field, value):
    with pytest.raises(EmailDataError) as raised:
        template_context(template, {**SAMPLE_DATA[template], field: value})
    assert raised.value.field == field


@pytest.mark.parametrize("template", list(TEMPLATE_FIELDS))
def test_sample_data_fits_its_template(template):
    assert template_context(template, SAMPLE_DATA[template])


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"event_id": "123"}, {"event_id": "123", "occurred": "later"}, True),
        ({"event_id": None}, {"event_id": None}, True),
        ({"event_id": None}, {"event_id": None, "occurred": "2026-11-29T10:00:01+00:00"}, False),
        ({"event_id": None}, {"event_id": None, "event_type": "bounced"}, False),
    ],
)
def test_event_key_identifies_a_repeated_event(first, second, same):
    base = {
        "provider": "Postmark",
        "event_type": "delivered",
        "message_id": "m-1",
        "occurred": "2026-11-29T10:00:00+00:00",
        "to": "a@example.com",
    }
    assert (event_key(**{**base, **first}) == event_key(**{**base, **second})) is same
