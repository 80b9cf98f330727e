"""The development mail backend: one log line per email, nothing sent."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger("kgc.mail")


class ConsoleSummaryBackend(BaseEmailBackend):
    """Logs who would get which email (recipient, subject, template) and sends nothing.

    The demo data queues thousands of emails; one line each keeps the development log
    readable, where printing every message whole buried everything else.
    ``EMAIL_CONSOLE_FULL=true`` prints whole messages instead (Django's console backend).
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            tags = getattr(message, "tags", None) or ["-"]  # the template, set by notifications.delivery
            logger.info(
                "email not sent (console backend): %s",
                message.subject,
                extra={"to": ", ".join(message.recipients()), "template": tags[0], "event": "email_console"},
            )
        return len(email_messages)
