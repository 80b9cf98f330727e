"""A digest item written for the digest's date, and whether it was resolved since it was made (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from notifications.digests import DigestItem, DocumentFacts, FilingFacts, item_resolution, item_text

DAY = date(2027, 3, 2)
DOC = {"documentId": 1, "clientName": "Acme", "documentType": "TIN", "expiresOn": "2027-03-10"}
FILING = {"filingId": 2, "clientName": "Acme", "filingType": "VAT", "period": "2027-02", "dueDate": "2027-03-04"}


@pytest.mark.parametrize(
    ("kind", "data", "title", "detail", "urgency"),
    [
        ("document_expiry", DOC, "TIN for Acme expires in 8 days", "TIN expires on Wednesday 10 March 2027", "NORMAL"),
        ("document_expiry", {**DOC, "expiresOn": "2027-03-03"}, "TIN for Acme expires tomorrow", None, "HIGH"),
        ("document_expiry", {**DOC, "expiresOn": "2027-03-01"}, "TIN for Acme expired yesterday", None, "URGENT"),
        (
            "filing_reminder",
            FILING,
            "Urgent: VAT 2027-02 for Acme is due in 2 days",
            "Due Thursday 4 March 2027",
            "URGENT",
        ),
        (
            "filing_reminder",
            {**FILING, "dueDate": "2027-03-08", "dueNote": "moved from Saturday 6 March: weekend"},
            "VAT 2027-02 for Acme is due in 6 days",
            "Due Monday 8 March 2027 (moved from Saturday 6 March: weekend)",
            "HIGH",
        ),
        (
            "filing_reminder",
            {**FILING, "dueDate": "2027-02-20"},
            "VAT 2027-02 for Acme was due 10 days ago",
            None,
            "URGENT",
        ),
        (
            "filing_escalation",
            {**FILING, "dueDate": "2027-02-22", "assignees": ["Amina Otieno"]},
            "Overdue: VAT 2027-02 for Acme is 8 days overdue",
            "Was due Monday 22 February 2027; assigned to Amina Otieno",
            "URGENT",
        ),
        ("document_expiry", {"clientName": "Acme"}, "Stored title", "", "NORMAL"),  # no date: its own title
    ],
)
def test_an_item_is_written_for_the_digests_date(kind, data, title, detail, urgency):
    text = item_text(DigestItem(1, kind, "NORMAL", "Stored title", data), DAY)
    assert (text.title, text.urgency) == (title, urgency)
    if detail is not None:
        assert text.detail == detail


@pytest.mark.parametrize(
    ("kind", "data", "documents", "filings", "reason"),
    [
        ("document_expiry", DOC, {1: DocumentFacts(date(2027, 3, 10), renewed=False)}, {}, None),
        ("document_expiry", DOC, {1: DocumentFacts(date(2027, 3, 10), renewed=True)}, {}, "renewed"),
        ("document_expiry", DOC, {1: DocumentFacts(date(2027, 4, 10), renewed=False)}, {}, "date changed"),
        ("document_expiry", DOC, {}, {}, None),  # gone: shown from its own data
        ("filing_reminder", FILING, {}, {2: FilingFacts("draft", date(2027, 3, 4))}, None),
        ("filing_reminder", FILING, {}, {2: FilingFacts("submitted", date(2027, 3, 4))}, "filed"),
        ("filing_escalation", FILING, {}, {2: FilingFacts("accepted", date(2027, 3, 4))}, "filed"),
        ("filing_reminder", FILING, {}, {2: FilingFacts("rejected", date(2027, 3, 4))}, None),  # still to file
        ("filing_reminder", FILING, {}, {2: FilingFacts("draft", date(2027, 3, 20))}, "date changed"),
        (
            "filing_reminder",
            {**FILING, "dueDate": "2027-03-08", "statutoryDueDate": "2027-03-06"},
            {},
            {2: FilingFacts("draft", date(2027, 3, 6))},
            None,  # moved by the calendar, not changed
        ),
        ("compliance_alert", {"clientId": 3}, {}, {}, None),
        ("document_expiry", {"documentId": "x"}, {}, {}, None),
    ],
)
def test_an_item_resolved_since_it_was_made_says_why(kind, data, documents, filings, reason):
    assert item_resolution(kind=kind, data=data, documents=documents, filings=filings) == reason
