"""Drafts of the items that wait for a digest (the fixtures are in tests/notifications/conftest.py)."""

from __future__ import annotations

from itertools import count

from notifications.services import NotificationDraft

_keys = count(1)


def document_draft(user, *, client_id=1, client_name="ACME Corp", days=14, urgency="NORMAL", expires="2026-12-13"):
    n = next(_keys)
    return NotificationDraft(
        recipient_id=user.pk,
        recipient_email=user.email,
        recipient_name=user.get_full_name(),
        kind="document_expiry",
        title=f"TIN Certificate {n} for {client_name} expires in {days} days",
        body="...",
        dedupe_key=f"digest-test:document:{n}:{user.pk}",
        email_template="document-expiry",
        email_subject="TIN Certificate expires",
        data={
            "documentId": 100 + n,
            "clientId": client_id,
            "clientName": client_name,
            "documentTitle": f"TIN {n}",
            "documentType": "TIN Certificate",
            "expiresOn": expires,
            "daysLeft": days,
        },
        urgency=urgency,
    )


def filing_draft(user, *, client_id=1, client_name="ACME Corp", urgency="HIGH", due="2026-12-05"):
    n = next(_keys)
    return NotificationDraft(
        recipient_id=user.pk,
        recipient_email=user.email,
        recipient_name=user.get_full_name(),
        kind="filing_reminder",
        title=f"VAT Return {n} for {client_name} is due",
        body="...",
        dedupe_key=f"digest-test:filing:{n}:{user.pk}",
        email_template="filing-reminder",
        email_subject="VAT Return due",
        data={
            "filingId": 200 + n,
            "clientId": client_id,
            "clientName": client_name,
            "filingType": "VAT Return",
            "period": "2026-11",
            "dueDate": due,
        },
        urgency=urgency,
    )
