"""In development (the console backend) each email the workers "send" is one log line, not two."""

from __future__ import annotations

import logging

import pytest

from kgc.mail import BurstLog, ConsoleSummaryBackend
from notifications.dispatcher import emails_send

pytestmark = pytest.mark.django_db


def test_an_email_sent_through_the_console_backend_is_logged_once(settings, make_email, caplog, monkeypatch):
    settings.MAILERS = {"default": {"BACKEND": "kgc.mail.ConsoleSummaryBackend"}}
    monkeypatch.setattr(ConsoleSummaryBackend, "log", BurstLog(schedule=lambda delay, action: None))
    make_email(subject="Your documents", to_email="pat@example.com")
    with caplog.at_level(logging.INFO):
        assert emails_send().count("sent") == 1
    about_it = [r.getMessage() for r in caplog.records if r.name in ("kgc.mail", "notifications.email")]
    assert about_it == ["email not sent (console backend): Your documents"]
