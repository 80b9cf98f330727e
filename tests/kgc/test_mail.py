"""The development mail backend logs one line per email at most, sends nothing, and sums up bursts."""

from __future__ import annotations

import logging

import pytest
from django.core.mail import EmailMultiAlternatives

from kgc.mail import BurstLog, ConsoleSummaryBackend


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def burst(monkeypatch):
    """The backend with a fresh burst log on a clock the test moves; its timers are recorded, not run."""
    clock, timers = FakeClock(), []
    log = BurstLog(window=30, lines=3, clock=clock, schedule=lambda delay, action: timers.append((delay, action)))
    monkeypatch.setattr(ConsoleSummaryBackend, "log", log)
    return log, clock, timers


def message(subject: str = "TIN Certificate expires in 14 days", template: str = "document-expiry"):
    email = EmailMultiAlternatives(subject=subject, body="x" * 5000, to=["ana@firm.example"])
    email.attach_alternative("<p>" + "y" * 5000 + "</p>", "text/html")
    email.tags = [template]  # as notifications.delivery sets it
    return email


def test_each_email_is_one_log_line_with_recipient_subject_and_template(caplog, burst):
    with caplog.at_level(logging.INFO, logger="kgc.mail"):
        sent = ConsoleSummaryBackend().send_messages([message(), message()])
    assert sent == 2
    assert [record.getMessage() for record in caplog.records] == [
        "email not sent (console backend): TIN Certificate expires in 14 days"
    ] * 2
    assert (caplog.records[0].to, caplog.records[0].template) == ("ana@firm.example", "document-expiry")


def test_a_burst_is_a_few_lines_then_one_line_counting_the_rest(caplog, burst):
    log, clock, timers = burst
    emails = [message()] * 7 + [message("VAT Return due in 3 days", "filing-reminder")] * 5
    with caplog.at_level(logging.INFO, logger="kgc.mail"):
        ConsoleSummaryBackend().send_messages(emails)
        assert len(caplog.records) == 3  # the first three of the window, one line each
        [(delay, summarise)] = timers
        assert delay == 30
        clock.now += 30
        summarise()  # the window's timer
    assert caplog.records[-1].getMessage() == (
        "9 more emails not sent (console backend) in the last 30 s: filing-reminder 5, document-expiry 4; "
        "LOG_LEVEL=DEBUG logs each one"
    )
    assert len(caplog.records) == 4


def test_a_new_window_shows_its_first_emails_again(caplog, burst):
    log, clock, timers = burst
    with caplog.at_level(logging.INFO, logger="kgc.mail"):
        ConsoleSummaryBackend().send_messages([message()] * 4)
        clock.now += 31
        ConsoleSummaryBackend().send_messages([message("A new one")])  # sums up the last window first
    assert [record.getMessage() for record in caplog.records][-2:] == [
        "1 more email not sent (console backend) in the last 30 s: document-expiry 1; LOG_LEVEL=DEBUG logs each one",
        "email not sent (console backend): A new one",
    ]


def test_a_quiet_window_writes_no_summary(caplog, burst):
    log, clock, timers = burst
    with caplog.at_level(logging.INFO, logger="kgc.mail"):
        ConsoleSummaryBackend().send_messages([message()])
        timers[0][1]()
    assert len(caplog.records) == 1


def test_with_log_level_debug_every_email_has_its_line(caplog, burst):
    with caplog.at_level(logging.DEBUG, logger="kgc.mail"):
        ConsoleSummaryBackend().send_messages([message()] * 10)
    assert len(caplog.records) == 10
