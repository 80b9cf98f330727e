"""The scoring policy, table-driven over its edges (no database)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from compliance.conf import DEFAULT_POLICY, scoring_policy
from compliance.scoring import (
    ClientFacts,
    HeldDocument,
    OpenFiling,
    RequiredDocument,
    client_score,
    level_dropped,
    score_level,
)

AS_OF = date(2026, 11, 29)
TIN = RequiredDocument(document_type_id=1, name="TIN Certificate")
VAT = RequiredDocument(document_type_id=2, name="VAT Registration Certificate")


def days(n: int) -> date:
    return AS_OF + timedelta(days=n)


def doc(expires_on: date | None, *, id: int = 10, type_id: int = 1) -> HeldDocument:
    return HeldDocument(id=id, document_type_id=type_id, expires_on=expires_on)


def filing(due: date, status: str = "draft", *, id: int = 20) -> OpenFiling:
    return OpenFiling(id=id, filing_type="VAT Return", period="2026-11", due_date=due, status=status)


def score(required=(), documents=(), filings=(), policy=DEFAULT_POLICY):
    facts = ClientFacts(
        client_id=1, name="ACME", required=tuple(required), documents=tuple(documents), filings=tuple(filings)
    )
    return client_score(facts, as_of=AS_OF, policy=policy)


@pytest.mark.parametrize(
    ("documents", "expected_score", "expected_reasons"),
    [
        pytest.param([], 80, ["missing"], id="no-document-is-missing"),
        pytest.param([doc(days(0))], 95, ["expiring"], id="expires-today-is-expiring"),
        pytest.param([doc(days(-1))], 80, ["expired"], id="expired-yesterday"),
        pytest.param([doc(days(30))], 95, ["expiring"], id="expires-in-exactly-30-days"),
        pytest.param([doc(days(31))], 100, [], id="expires-in-31-days-counts-nothing"),
        pytest.param([doc(None)], 100, [], id="no-expiry-date-never-expires"),
        pytest.param([doc(days(-200), id=10), doc(days(300), id=11)], 100, [], id="old-expired-next-to-renewed"),
        pytest.param([doc(days(300), id=11), doc(days(-200), id=10)], 100, [], id="renewed-listed-first"),
        pytest.param([doc(days(-5), id=10), doc(days(10), id=11)], 95, ["expiring"], id="renewal-itself-expiring"),
        pytest.param([doc(None, id=10), doc(days(-5), id=11)], 100, [], id="no-expiry-beats-an-expired-copy"),
        pytest.param([doc(days(-5), id=11), doc(None, id=10)], 100, [], id="no-expiry-beats-listed-second"),
        pytest.param([doc(None, type_id=2)], 80, ["missing"], id="a-document-of-another-type-is-still-missing"),
    ],
)
def test_required_document_deductions(documents, expected_score, expected_reasons):
    result = score(required=[TIN], documents=documents)
    assert (result.score, [d["reason"] for d in result.breakdown]) == (expected_score, expected_reasons)


def test_documents_of_types_not_required_never_count():
    assert score(required=[], documents=[doc(days(-5)), doc(days(3), id=11)]).score == 100


@pytest.mark.parametrize(
    ("due", "status", "expected_score", "expected_reasons"),
    [
        pytest.param(days(0), "draft", 95, ["upcoming"], id="draft-due-today-is-upcoming"),
        pytest.param(days(-1), "draft", 80, ["overdue"], id="draft-due-yesterday-is-overdue"),
        pytest.param(days(7), "draft", 95, ["upcoming"], id="draft-due-in-7-days"),
        pytest.param(days(8), "draft", 100, [], id="draft-due-in-8-days-counts-nothing"),
        pytest.param(days(-1), "prepared", 80, ["overdue"], id="prepared-past-due-is-overdue"),
        pytest.param(days(-30), "rejected", 80, ["overdue"], id="rejected-past-due-is-overdue"),
        pytest.param(days(-1), "submitted", 100, [], id="submitted-past-due-never-counts"),
        pytest.param(days(-1), "accepted", 100, [], id="accepted-past-due-never-counts"),
        pytest.param(days(3), "submitted", 100, [], id="submitted-due-soon-never-counts"),
        pytest.param(days(3), "prepared", 100, [], id="prepared-due-soon-is-not-upcoming"),
        pytest.param(days(3), "rejected", 100, [], id="rejected-due-soon-is-not-upcoming"),
    ],
)
def test_filing_deductions(due, status, expected_score, expected_reasons):
    result = score(filings=[filing(due, status)])
    assert (result.score, [d["reason"] for d in result.breakdown]) == (expected_score, expected_reasons)


def test_each_overdue_filing_counts_separately():
    result = score(filings=[filing(days(-1), id=1), filing(days(-2), "rejected", id=2), filing(days(-3), id=3)])
    assert result.score == 40


def test_score_is_floored_at_zero():
    required = [RequiredDocument(n, f"Type {n}") for n in range(1, 5)]
    result = score(required=required, filings=[filing(days(-n), id=n) for n in range(1, 4)])
    assert (result.score, result.level, len(result.deductions)) == (0, "red", 7)


@pytest.mark.parametrize(
    ("value", "level"),
    [(100, "green"), (80, "green"), (79, "amber"), (50, "amber"), (49, "red"), (0, "red")],
)
def test_level_boundaries(value, level):
    assert score_level(value, DEFAULT_POLICY) == level


def test_level_of_a_scored_client_follows_its_score():
    result = score(required=[TIN, VAT], filings=[filing(days(-1))])  # 100 - 20 - 20 - 20
    assert (result.score, result.level) == (40, "red")


def test_breakdown_names_the_document_type_and_the_document_that_counts():
    result = score(required=[TIN], documents=[doc(days(-300), id=10), doc(days(-3), id=11)])
    assert result.breakdown == [
        {
            "reason": "expired",
            "points": 20,
            "issue": f"TIN Certificate expired on {days(-3).isoformat()}",
            "recommendation": "Renew TIN Certificate",
            "document_type_id": 1,
            "document_id": 11,
            "filing_id": None,
            "date": days(-3).isoformat(),
        }
    ]


def test_breakdown_names_the_missing_type_and_the_overdue_filing():
    result = score(required=[TIN], filings=[filing(days(-1), id=42)])
    missing, overdue = result.breakdown
    assert (missing["reason"], missing["document_type_id"], missing["document_id"]) == ("missing", 1, None)
    assert (overdue["reason"], overdue["filing_id"], overdue["document_type_id"]) == ("overdue", 42, None)


def test_issues_and_recommendations_read_like_the_seed_example():
    result = score(required=[TIN])
    assert (result.issues, result.recommendations) == (["Missing TIN Certificate"], ["Upload TIN Certificate"])


def test_policy_overrides_change_weights_and_windows():
    policy = scoring_policy({"missing_points": 60, "expiring_days": 60})
    assert score(required=[TIN], policy=policy).score == 40
    assert score(required=[TIN], documents=[doc(days(45))], policy=policy).score == 95


@pytest.mark.parametrize(
    ("previous", "current", "dropped"),
    [
        ("green", "amber", True),
        ("amber", "red", True),
        ("green", "red", True),
        ("green", "green", False),
        ("amber", "amber", False),
        ("red", "red", False),
        ("amber", "green", False),
        ("red", "amber", False),
        (None, "red", False),
    ],
)
def test_level_dropped(previous, current, dropped):
    assert level_dropped(previous, current) is dropped
