"""The scoring policy: a pure function of a client's facts and a day.

No database and no clock: the refresh service loads the facts, calls ``client_score``
and saves what it returns, and the tests call it with a table of edge cases.

Computed for a client on ``as_of`` (the tenant's local date), starting at 100:

* each required document type: the client's document of that type with the latest
  ``expires_on`` counts (no expiry date never expires, the best). None at all is
  **missing**; expired before ``as_of`` is **expired**; expiring from ``as_of`` to
  ``as_of + expiring_days`` inclusive is **expiring**;
* each draft, prepared or rejected filing due before ``as_of`` is **overdue**; each
  draft filing due from ``as_of`` to ``as_of + upcoming_days`` inclusive is **upcoming**.
  Submitted and accepted filings never count.

The score is floored at 0; its level is green, amber or red by the policy's thresholds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db import models

from compliance.conf import ScoringPolicy
from compliance.models import FilingStatus, ScoreLevel

START = 100

OVERDUE_STATUSES = frozenset({FilingStatus.DRAFT, FilingStatus.PREPARED, FilingStatus.REJECTED})
UPCOMING_STATUSES = frozenset({FilingStatus.DRAFT})
# Worse is further down this list: green to amber, amber to red and green to red are drops.
LEVEL_RANK = {ScoreLevel.GREEN: 0, ScoreLevel.AMBER: 1, ScoreLevel.RED: 2}


class DeductionReason(models.TextChoices):
    MISSING = "missing", "Missing"
    EXPIRED = "expired", "Expired"
    EXPIRING = "expiring", "Expiring"
    OVERDUE = "overdue", "Overdue"
    UPCOMING = "upcoming", "Upcoming"


@dataclass(frozen=True)
class RequiredDocument:
    document_type_id: int
    name: str


@dataclass(frozen=True)
class HeldDocument:
    id: int
    document_type_id: int
    expires_on: date | None  # None: never expires


@dataclass(frozen=True)
class OpenFiling:
    id: int
    filing_type: str
    period: str
    due_date: date
    status: str


@dataclass(frozen=True)
class ClientFacts:
    """What the policy needs to know about one client."""

    client_id: int
    name: str
    required: tuple[RequiredDocument, ...] = ()
    documents: tuple[HeldDocument, ...] = ()
    filings: tuple[OpenFiling, ...] = ()


@dataclass(frozen=True)
class Deduction:
    reason: DeductionReason
    points: int
    issue: str  # what is wrong, for people ("Missing TIN Certificate")
    recommendation: str  # what to do about it ("Upload TIN Certificate")
    document_type_id: int | None = None
    document_id: int | None = None
    filing_id: int | None = None
    on: date | None = None  # the expiry or due date that triggered it

    def as_json(self) -> dict[str, Any]:
        """One ``ComplianceScore.breakdown`` entry."""
        return {
            "reason": str(self.reason),
            "points": self.points,
            "issue": self.issue,
            "recommendation": self.recommendation,
            "document_type_id": self.document_type_id,
            "document_id": self.document_id,
            "filing_id": self.filing_id,
            "date": self.on.isoformat() if self.on else None,
        }


@dataclass(frozen=True)
class ScoreResult:
    score: int
    level: ScoreLevel
    deductions: tuple[Deduction, ...] = field(default=())

    @property
    def breakdown(self) -> list[dict[str, Any]]:
        return [deduction.as_json() for deduction in self.deductions]

    @property
    def issues(self) -> list[str]:
        return [deduction.issue for deduction in self.deductions]

    @property
    def recommendations(self) -> list[str]:
        return [deduction.recommendation for deduction in self.deductions]


def score_level(score: int, policy: ScoringPolicy) -> ScoreLevel:
    if score >= policy.green_from:
        return ScoreLevel.GREEN
    if score >= policy.amber_from:
        return ScoreLevel.AMBER
    return ScoreLevel.RED


def level_dropped(previous: str | None, current: str) -> bool:
    """True when ``current`` is a worse level than ``previous``; a first score is no drop."""
    if previous is None:
        return False
    return LEVEL_RANK[ScoreLevel(current)] > LEVEL_RANK[ScoreLevel(previous)]


def client_score(facts: ClientFacts, *, as_of: date, policy: ScoringPolicy) -> ScoreResult:
    """Score one client on ``as_of``; every point taken off is listed with its reason."""
    deductions = [
        *document_deductions(facts.required, facts.documents, as_of=as_of, policy=policy),
        *filing_deductions(facts.filings, as_of=as_of, policy=policy),
    ]
    score = max(START - sum(d.points for d in deductions), 0)
    return ScoreResult(score=score, level=score_level(score, policy), deductions=tuple(deductions))


def _latest(documents: Iterable[HeldDocument]) -> dict[int, HeldDocument]:
    """Per document type, the document that counts: no expiry beats any date, later beats earlier."""
    best: dict[int, HeldDocument] = {}
    for document in documents:
        current = best.get(document.document_type_id)
        if current is None or _lasts_longer(document, current):
            best[document.document_type_id] = document
    return best


def _lasts_longer(candidate: HeldDocument, current: HeldDocument) -> bool:
    if current.expires_on is None:
        return False
    return candidate.expires_on is None or candidate.expires_on > current.expires_on


def document_deductions(
    required: Iterable[RequiredDocument], documents: Iterable[HeldDocument], *, as_of: date, policy: ScoringPolicy
) -> list[Deduction]:
    latest = _latest(documents)
    expiring_until = as_of + timedelta(days=policy.expiring_days)
    deductions = []
    for requirement in sorted(required, key=lambda r: (r.name, r.document_type_id)):
        ids: dict[str, Any] = {"document_type_id": requirement.document_type_id}
        document = latest.get(requirement.document_type_id)
        if document is None:
            deductions.append(
                Deduction(
                    DeductionReason.MISSING,
                    policy.missing_points,
                    f"Missing {requirement.name}",
                    f"Upload {requirement.name}",
                    **ids,
                )
            )
            continue
        expires_on = document.expires_on
        if expires_on is None or expires_on > expiring_until:
            continue
        expired = expires_on < as_of
        deductions.append(
            Deduction(
                DeductionReason.EXPIRED if expired else DeductionReason.EXPIRING,
                policy.expired_points if expired else policy.expiring_points,
                f"{requirement.name} {'expired' if expired else 'expires'} on {expires_on.isoformat()}",
                f"Renew {requirement.name}" if expired else f"Renew {requirement.name} before {expires_on.isoformat()}",
                document_id=document.id,
                on=expires_on,
                **ids,
            )
        )
    return deductions


def filing_deductions(filings: Iterable[OpenFiling], *, as_of: date, policy: ScoringPolicy) -> list[Deduction]:
    upcoming_until = as_of + timedelta(days=policy.upcoming_days)
    deductions = []
    for filing in sorted(filings, key=lambda f: (f.due_date, f.id)):
        name, due = f"{filing.filing_type} {filing.period}", filing.due_date.isoformat()
        ids: dict[str, Any] = {"filing_id": filing.id, "on": filing.due_date}
        if filing.due_date < as_of and filing.status in OVERDUE_STATUSES:
            deductions.append(
                Deduction(
                    DeductionReason.OVERDUE,
                    policy.overdue_points,
                    f"{name} overdue (due {due})",
                    f"Submit {name}",
                    **ids,
                )
            )
        elif as_of <= filing.due_date <= upcoming_until and filing.status in UPCOMING_STATUSES:
            deductions.append(
                Deduction(
                    DeductionReason.UPCOMING,
                    policy.upcoming_points,
                    f"{name} due on {due}",
                    f"Submit {name} by {due}",
                    **ids,
                )
            )
    return deductions
