"""The development mail backend logs one line per email and sends nothing."""

from __future__ import annotations

import logging

from django.core.mail import EmailMultiAlternatives

from kgc.mail import ConsoleSummaryBackend


def test_each_email_is_one_log_line_with_recipient_subject_and_template(caplog):
    message = EmailMultiAlternatives(
        subject="TIN Certificate expires in 14 days", body="x" * 5000, to=["ana@firm.example"]
    )
    message.attach_alternative("<p>" + "y" * 5000 + "</p>", "text/html")
    message.tags = ["document-expiry"]  # as notifications.delivery sets it
    with caplog.at_level(logging.INFO, logger="kgc.mail"):
        sent = ConsoleSummaryBackend().send_messages([message, message])
    assert sent == 2
    assert [record.getMessage() for record in caplog.records] == [
        "email not sent (console backend): TIN Certificate expires in 14 days"
    ] * 2
    assert (caplog.records[0].to, caplog.records[0].template) == ("ana@firm.example", "document-expiry")
