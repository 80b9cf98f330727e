"""The MIME form written directly (notifications/mime.py), read back with Python's email package."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from notifications.mime import MimeError, PreparedEmail, address_header, header, mime_message

SHORT = "<p>Hello</p>"


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert not message.defects and not any(part.defects for part in message.walk())
    return message  # type: ignore[return-value]


def build(*lines: str, text: str = "Hello", html: str = SHORT) -> email.message.EmailMessage:
    return parse(mime_message(header_lines=list(lines), text=text, html=html))


@pytest.mark.parametrize(
    "subject",
    [
        "TIN Certificate of ACME Corp expires in 30 days",
        "A long subject " * 12,  # folded at spaces
        "Certificat TVA de Société Générale expire dans 7 jours — urgent",
        "📄 " + "Ünïcödé " * 30,  # many encoded words, no character split between two
        "Ends with a space ",
    ],
)
def test_a_subject_reads_back_as_written(subject):
    data = mime_message(header_lines=[header("Subject", subject)], text="t", html=SHORT)
    assert parse(data)["Subject"] == subject
    assert all(len(line) <= 78 for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"))


@pytest.mark.parametrize(
    ("name", "address", "display", "domain"),
    [
        ("Jane Doe", "jane@example.com", "Jane Doe", "example.com"),
        ("Doe, Jane (CFO)", "jane@example.com", "Doe, Jane (CFO)", "example.com"),
        ('Jane "JD" Doe', "jane@example.com", 'Jane "JD" Doe', "example.com"),
        ("Zoë Ünal", "zoe@example.com", "Zoë Ünal", "example.com"),
        ("", "ops@example.com", "", "example.com"),
        ("Ops", "ops@exämple.com", "Ops", "xn--exmple-cua.com"),
    ],
)
def test_an_address_reads_back_with_its_display_name(name, address, display, domain):
    [parsed] = build(address_header("To", name, address))["To"].addresses
    assert (parsed.display_name, parsed.username, parsed.domain) == (display, address.split("@")[0], domain)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: header("Subject", "two\r\nlines"), "one line"),
        (lambda: address_header("To", "Jane\nDoe", "jane@example.com"), "one line"),
        (lambda: address_header("To", "Jane", "jané@example.com"), "must be ASCII"),
        (lambda: address_header("To", "Jane", "not-an-address"), "is not an address"),
        (lambda: address_header("To", "", "v@x.com>,<a@evil.com"), "may hold letters"),
        (lambda: address_header("To", "", "a,b<c>@example.com"), "may hold letters"),
        (lambda: address_header("To", "", "a(comment)@example.com"), "may hold letters"),
        (lambda: address_header("To", "", '"quoted"@example.com'), "may hold letters"),
        (lambda: address_header("To", "", "ops@[127.0.0.1]"), "is not a host name"),
        (lambda: header("Message-ID", "<outbound-1@exämple.com>"), "must be ASCII"),
        (lambda: header("List-Unsubscribe", "<https://x.example/" + "a" * 1000 + ">"), "must be ASCII"),
    ],
)
def test_values_no_header_can_carry_are_refused(make, problem):
    with pytest.raises(MimeError, match=problem):
        make()


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Hello,\n\nYour document expires soon.\n", "7bit"),
        ("A line far longer than seventy-eight characters " * 4, "quoted-printable"),
        ("Société Générale — 7 jours\n", "quoted-printable"),
    ],
)
def test_each_part_reads_back_in_the_encoding_its_text_needs(text, encoding):
    message = build(text=text, html=f"<p>{text}</p>")
    plain, html = message.iter_parts()
    assert (plain["Content-Transfer-Encoding"], plain.get_content_charset()) == (encoding, "utf-8")
    assert plain.get_content().replace("\r\n", "\n") == text
    assert html.get_content().replace("\r\n", "\n") == f"<p>{text}</p>"


def test_the_message_is_an_alternative_of_text_then_html():
    message = build(header("Subject", "s"))
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message.get_body(("html", "plain")).get_content_type() == "text/html"  # what clients show


def prepared(**headers: str) -> PreparedEmail:
    message = PreparedEmail(
        subject="Your TIN Certificate expires",
        body="text part",
        from_email="KGC Compliance <noreply@kgc-compliance.com>",
        to=["Zoë Ünal <zoe@example.com>"],
        headers={"Message-ID": "<outbound-7.3@kgc-compliance.com>", **headers},
    )
    message.attach_alternative("<p>html part</p>", "text/html")
    message.prepare(to_name="Zoë Ünal", to_email="zoe@example.com", now=datetime(2026, 12, 1, 8, tzinfo=UTC))
    return message


def test_a_prepared_email_carries_every_header_django_would_write():
    message = parse(prepared(**{"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}).message().as_bytes())
    assert message["From"].addresses[0].display_name == "KGC Compliance"
    assert message["To"].addresses[0].display_name == "Zoë Ünal"
    assert message["Subject"] == "Your TIN Certificate expires"
    assert message["Message-ID"] == "<outbound-7.3@kgc-compliance.com>"
    assert message["Date"].datetime == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["MIME-Version"] == "1.0"


def test_a_header_a_provider_adds_to_the_message_is_sent():
    message = prepared().message(policy=email.policy.SMTP)
    message["X-SES-CONFIGURATION-SET"] = "kgc"
    assert parse(message.as_bytes())["X-SES-CONFIGURATION-SET"] == "kgc"


def test_a_word_too_long_to_fold_is_sent_as_encoded_words():
    subject = "ref-" + "x" * 1200
    data = mime_message(header_lines=[header("Subject", subject)], text="t", html=SHORT)
    assert parse(data)["Subject"] == subject
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_without_html_the_message_is_its_text_alone():
    message = build(header("Subject", "s"), text="Only text", html="")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Only text"
