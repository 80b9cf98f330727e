"""The reminder rules, without the database: thresholds, urgency, recipients, texts."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from notifications.rules import (
    EXPIRY_THRESHOLDS,
    FILING_THRESHOLDS,
    ExpiringDocument,
    FilingAssignment,
    Person,
    SkippedAssignee,
    UpcomingFiling,
    expiry_recipients,
    expiry_reminders,
    filing_recipients,
    filing_reminders,
    filing_urgency,
    threshold_due,
)

AS_OF = date(2026, 11, 29)


def person(user_id: int, role: str) -> Person:
    return Person(user_id=user_id, email=f"u{user_id}@example.com", name=f"User {user_id}", role=role)


STAFF = [
    person(1, "admin"),
    person(2, "manager"),
    person(3, "compliance_officer"),
    person(4, "tax_preparer"),
    person(5, "viewer"),
]


def document(days_left: int, document_id: int = 10) -> ExpiringDocument:
    return ExpiringDocument(
        document_id=document_id,
        client_id=7,
        client_name="Acme Holdings",
        title="TIN Certificate (Acme Holdings)",
        document_type="TIN Certificate",
        expires_on=AS_OF + timedelta(days=days_left),
    )


def filing(days_left: int, *, status: str = "draft", assignments=()) -> UpcomingFiling:
    return UpcomingFiling(
        filing_id=20,
        client_id=7,
        client_name="Acme Holdings",
        filing_type="VAT Return",
        period="2026-11",
        due_date=AS_OF + timedelta(days=days_left),
        status=status,
        assignments=tuple(assignments),
    )


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(31, None), (30, 30), (29, 30), (15, 30), (14, 14), (8, 14), (7, 7), (6, 7), (1, 7), (0, 7), (-1, None)],
)
def test_expiry_threshold_is_the_smallest_crossed(days_left, expected):
    assert threshold_due(days_left=days_left, thresholds=EXPIRY_THRESHOLDS) == expected


@pytest.mark.parametrize(
    ("days_left", "expected"), [(15, None), (14, 14), (8, 14), (7, 7), (4, 7), (3, 3), (0, 3), (-1, None)]
)
def test_filing_threshold_is_the_smallest_crossed(days_left, expected):
    assert threshold_due(days_left=days_left, thresholds=FILING_THRESHOLDS) == expected


@pytest.mark.parametrize(
    ("days_left", "sent", "expected"),
    [
        (29, {30}, None),  # the day after the 30-day reminder
        (14, {30}, 14),
        (12, {30}, 14),  # two missed days: the 14-day reminder still goes out
        (5, {30}, 7),  # 14 and 7 both missed: only the smallest crossed
        (5, set(), 7),  # a first run in the last week: one reminder, not three
        (8, {30, 14}, None),
        (7, {30, 14}, 7),
        (6, {30, 14, 7}, None),
        (20, {7}, None),  # a date moved later after the 7-day reminder: never step back up
    ],
)
def test_expiry_threshold_given_what_was_sent(days_left, sent, expected):
    assert threshold_due(days_left=days_left, thresholds=EXPIRY_THRESHOLDS, sent=sent) == expected


@pytest.mark.parametrize(
    ("days_left", "expected"), [(14, "NORMAL"), (8, "NORMAL"), (7, "HIGH"), (4, "HIGH"), (3, "URGENT"), (0, "URGENT")]
)
def test_filing_urgency_by_days_left(days_left, expected):
    assert filing_urgency(days_left) == expected


def test_expiry_recipients_are_admins_managers_and_compliance_officers():
    assert [p.user_id for p in expiry_recipients(STAFF)] == [1, 2, 3]


def test_filing_recipients_add_tax_preparers_and_assignees():
    members = {p.user_id: p for p in STAFF}
    recipients, skipped = filing_recipients(
        members=members, filing=filing(5, assignments=[FilingAssignment(5, "Collect the invoices")])
    )
    assert [p.user_id for p in recipients] == [1, 2, 3, 4, 5]
    assert skipped == []


def test_filing_assignee_who_is_not_a_member_is_skipped():
    members = {p.user_id: p for p in STAFF}
    recipients, skipped = filing_recipients(
        members=members, filing=filing(5, assignments=[FilingAssignment(99, "Prepare the return")])
    )
    assert 99 not in {p.user_id for p in recipients}
    assert skipped == [SkippedAssignee(filing_id=20, user_id=99)]


def test_assignee_with_a_role_gets_one_reminder():
    reminders, _ = filing_reminders(
        filings=[filing(5, assignments=[FilingAssignment(4, "Prepare"), FilingAssignment(4, "Review")])],
        members=STAFF,
        sent_keys=frozenset(),
        tenant_name="Kestrel Accounting",
        as_of=AS_OF,
    )
    assert sorted(r.recipient.user_id for r in reminders) == [1, 2, 3, 4]


@pytest.mark.parametrize("status", ["submitted", "accepted", "rejected"])
def test_filing_past_draft_or_prepared_gets_no_reminder(status):
    reminders, _ = filing_reminders(
        filings=[filing(5, status=status)], members=STAFF, sent_keys=frozenset(), tenant_name="K", as_of=AS_OF
    )
    assert reminders == []


def test_reminder_already_sent_to_one_person_still_goes_to_the_others():
    reminders = expiry_reminders(
        documents=[document(14)],
        members=STAFF,
        sent_keys=frozenset({"document_expiry:10@2026-12-13:14:1"}),
        tenant_name="K",
        as_of=AS_OF,
    )
    assert [r.recipient.user_id for r in reminders] == [2, 3]


def test_expiry_reminder_says_what_which_client_and_when():
    [reminder] = expiry_reminders(
        documents=[document(1)], members=[STAFF[0]], sent_keys=frozenset(), tenant_name="Kestrel", as_of=AS_OF
    )
    assert reminder.title == "TIN Certificate for Acme Holdings expires tomorrow"
    assert "30 November 2026" in reminder.body
    assert reminder.dedupe_key == "document_expiry:10@2026-11-30:7:1"
    assert reminder.urgency == "HIGH"
    assert reminder.data == {
        "documentId": 10,
        "clientId": 7,
        "documentTitle": "TIN Certificate (Acme Holdings)",
        "documentType": "TIN Certificate",
        "clientName": "Acme Holdings",
        "expiresOn": "2026-11-30",
        "daysLeft": 1,
        "tenantName": "Kestrel",
        "asOf": "2026-11-29",
    }


def test_urgent_filing_reminder_says_so_and_names_the_assignees_task():
    reminders, _ = filing_reminders(
        filings=[filing(2, assignments=[FilingAssignment(5, "Collect the invoices")])],
        members=STAFF,
        sent_keys=frozenset(),
        tenant_name="Kestrel",
        as_of=AS_OF,
    )
    by_user = {r.recipient.user_id: r for r in reminders}
    assert by_user[5].title == "Urgent: VAT Return 2026-11 for Acme Holdings is due in 2 days"
    assert "Your task: Collect the invoices." in by_user[5].body
    assert "Your task" not in by_user[1].body
    assert by_user[5].data == {
        "filingId": 20,
        "clientId": 7,
        "filingType": "VAT Return",
        "period": "2026-11",
        "clientName": "Acme Holdings",
        "dueDate": "2026-12-01",
        "statutoryDueDate": "2026-12-01",
        "dueNote": "",
        "daysLeft": 2,
        "urgency": "URGENT",
        "tenantName": "Kestrel",
        "asOf": "2026-11-29",
    }


def test_a_date_moved_later_starts_its_reminders_afresh():
    sent_for_old_date = frozenset({"document_expiry:10@2026-12-01:7:1"})  # 7-day reminder sent for Dec 1
    reminders = expiry_reminders(
        documents=[document(5)],  # the expiry date was corrected to Dec 4
        members=[STAFF[0]],
        sent_keys=sent_for_old_date,
        tenant_name="K",
        as_of=AS_OF,
    )
    assert [(r.threshold, r.dedupe_key) for r in reminders] == [(7, "document_expiry:10@2026-12-04:7:1")]
