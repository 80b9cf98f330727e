"""Addresses that no email is handed to the server for.

An address is suppressed for every tenant when it does not exist (a hard bounce from the
provider's webhook, or an SMTP 5xx "no such user" at send time), and for one tenant when
its owner reported that tenant's email as spam (a complaint). A run that makes
notifications gives such an address's notifications the ``suppressed`` email status and
no email; a send job that finds its address suppressed records ``suppressed`` and sends
nothing. Operators see and lift suppressions in the admin (``Suppression``).

Sending to addresses that bounce or complain is what gets a sender's mail filed as spam
for everyone (Gmail's and Yahoo's bulk-sender rules), so these rules err on the side of
not sending: an operator lifts a suppression that was wrong.
"""

from __future__ import annotations

import logging
import re
import smtplib
from typing import Any

from anymail.signals import AnymailTrackingEvent
from django.db import connection

from notifications.models import SuppressionReason

logger = logging.getLogger("notifications.email")

# Enhanced status codes (RFC 3463) that say the mailbox or its domain does not exist:
# bad destination mailbox, bad destination system, destination mailbox address invalid
# (null MX, RFC 7505). Not 5.7.x: a policy refusal says nothing about the address.
_GONE_STATUS = re.compile(r"\b5\.1\.(1|2|10)\b")
_GONE_WORDS = re.compile(
    r"no such (user|mailbox|recipient)|user unknown|unknown (user|recipient)|mailbox (not found|does not exist)"
    r"|recipient (address )?(does not exist|not found)|address does not exist|account (that you tried to reach )?"
    r"does not exist|invalid recipient",
    re.IGNORECASE,
)


def smtp_reply_says_address_gone(*, code: int, text: str) -> bool:
    """Whether an SMTP reply says the recipient's address does not exist (pure).

    Only a permanent (5xx) reply counts, and only with an enhanced status code 5.1.1,
    5.1.2 or 5.1.10 or words that say so ("no such user", "user unknown"...): a 550
    for a policy reason (spam, blocked, relaying denied) suppresses nothing.
    """
    if not 500 <= code < 600:
        return False
    return bool(_GONE_STATUS.search(text) or _GONE_WORDS.search(text))


def _smtp_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def send_error_says_address_gone(exc: BaseException) -> bool:
    """Whether a send's SMTP error says the address does not exist (at RCPT or at DATA)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(
            smtp_reply_says_address_gone(code=code, text=_smtp_text(text)) for code, text in exc.recipients.values()
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return smtp_reply_says_address_gone(code=exc.smtp_code, text=_smtp_text(exc.smtp_error))
    return False


# Provider bounce types that are soft (the mailbox exists; try again later), by the
# provider's own field. anymail reports some of them as "bounced" all the same.
_SOFT_BOUNCE_TYPES = frozenset({"softbounce", "transient", "dnserror", "autoresponder", "blocked", "undeliverable"})


def bounce_is_hard(event: AnymailTrackingEvent) -> bool:
    """Whether a provider's "bounced" event means the address does not exist (pure).

    A bounce is hard unless the provider says it was soft or transient (Postmark's
    ``Type``, Amazon SES's ``bounceType``) or the receiving server answered 4xx.
    """
    raw: dict[str, Any] = event.esp_event if isinstance(event.esp_event, dict) else {}
    bounce: dict[str, Any] = raw["bounce"] if isinstance(raw.get("bounce"), dict) else {}
    kinds = {str(raw.get("Type", "")), str(bounce.get("bounceType", ""))}
    if {kind.lower() for kind in kinds} & _SOFT_BOUNCE_TYPES:
        return False
    response = (event.mta_response or "").strip()
    return not re.match(r"^(smtp;\s*)?4\d\d\b", response, re.IGNORECASE)


# One row per (address, tenant), every tenant's row included (NULLS NOT DISTINCT): a
# second bounce of the same address adds nothing.
_ADD_SQL = """
INSERT INTO notifications_suppression (email, reason, tenant_id, description, created_at)
VALUES (lower(trim(%(email)s)), %(reason)s, %(tenant_id)s, %(description)s, now())
ON CONFLICT (email, tenant_id) DO NOTHING
"""


def suppression_add(*, email: str, reason: str, tenant_id: int | None, description: str = "") -> bool:
    """Suppress ``email`` for one tenant, or for every tenant (``tenant_id`` None); True if new.

    Idempotent, one statement; runs in the caller's transaction when there is one.
    """
    if reason not in SuppressionReason.values:
        raise ValueError(f"unknown suppression reason {reason!r}")
    with connection.cursor() as cursor:
        cursor.execute(
            _ADD_SQL, {"email": email, "reason": reason, "tenant_id": tenant_id, "description": description[:2000]}
        )
        created = cursor.rowcount == 1
    if created:
        logger.info(
            "address suppressed",
            extra={
                "event": "email_suppressed",
                "reason": reason,
                "tenant_id": tenant_id,
                "to_domain": email.rpartition("@")[2],
            },
        )
    return created
