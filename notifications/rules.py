"""The reminder rules: who is told what, and when. Plain functions over plain data.

No ORM and no clock: the selectors load ``ExpiringDocument``, ``UpcomingFiling`` and
``Person`` rows, the service passes the tenant's local date, and these functions
decide. Every reminder is keyed ``<kind>:<object id>:<threshold>:<recipient id>``;
the database refuses a second notification with the same key.

Thresholds are each firm's own (``compliance/firm_settings.py``; 30/14/7 days for
documents and 14/7/3 for filings by default). Filings count to their effective due date
(``compliance/calendars.py``: a due date on a weekend or a holiday of the firm's, or the
filing's, calendar moves to the next business day).

Crossing, not exact days: an object is due the reminder for threshold T once its
days left are T or fewer. A run sends only the smallest threshold crossed, and only
if neither it nor a smaller one was sent to that person before. So a missed day still
gets its reminder the next day, a first run at 12 days left sends the 14-day reminder
once (not the 30-day one too), and reminders never step back to a larger threshold.

Escalations (overdue filings) follow the same shape: the step due is the latest one
reached (the first overdue day, then every ``every_days``), sent once per person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from compliance.calendars import DueDate, due_phrase
from compliance.firm_settings import EXPIRY_DAYS_DEFAULT, FILING_DAYS_DEFAULT
from compliance.models import FilingStatus, MembershipRole
from notifications.models import NotificationKind, NotificationUrgency

EXPIRY_THRESHOLDS = EXPIRY_DAYS_DEFAULT
FILING_THRESHOLDS = FILING_DAYS_DEFAULT
EXPIRY_ROLES = frozenset({MembershipRole.ADMIN, MembershipRole.MANAGER, MembershipRole.COMPLIANCE_OFFICER})
FILING_ROLES = EXPIRY_ROLES | {MembershipRole.TAX_PREPARER}
ESCALATION_ROLES = frozenset({MembershipRole.ADMIN, MembershipRole.MANAGER})
FILING_STATUSES_REMINDED = (FilingStatus.DRAFT, FilingStatus.PREPARED)
# Not filed: what an overdue filing still in one of these statuses escalates for.
FILING_STATUSES_ESCALATED = (FilingStatus.DRAFT, FilingStatus.PREPARED, FilingStatus.REJECTED)
EXPIRY_TEMPLATE = "document-expiry"
FILING_TEMPLATE = "filing-reminder"
ESCALATION_TEMPLATE = "filing-escalation"


@dataclass(frozen=True)
class Person:
    """An active user with a membership in the tenant."""

    user_id: int
    email: str
    name: str
    role: str


@dataclass(frozen=True)
class ExpiringDocument:
    """The latest document of its (client, document type), with an expiry date."""

    document_id: int
    client_id: int
    client_name: str
    title: str
    document_type: str
    expires_on: date


@dataclass(frozen=True)
class FilingAssignment:
    user_id: int
    task_title: str


@dataclass(frozen=True)
class UpcomingFiling:
    """A filing and when it is due: ``due_date`` is the effective date (a business day under
    its calendar), ``statutory_due_date`` the one it was given (the same without a calendar)."""

    filing_id: int
    client_id: int
    client_name: str
    filing_type: str
    period: str
    due_date: date
    status: str
    assignments: tuple[FilingAssignment, ...] = ()
    statutory_due_date: date | None = None
    moved_because: tuple[str, ...] = ()

    @property
    def due(self) -> DueDate:
        return DueDate(self.statutory_due_date or self.due_date, self.due_date, self.moved_because)


@dataclass(frozen=True)
class OverdueFiling:
    """A filing past its effective due date and not filed, with the names of its assignees."""

    filing_id: int
    client_id: int
    client_name: str
    filing_type: str
    period: str
    due: DueDate
    status: str
    assignees: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reminder:
    """One notification (and its email) for one person."""

    recipient: Person
    kind: str
    object_id: int
    threshold: int
    days_left: int
    urgency: str
    title: str
    body: str
    email_template: str
    email_subject: str
    dedupe_key: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedAssignee:
    """A filing's assignee who is not an active member of the filing's tenant."""

    filing_id: int
    user_id: int


# --- Thresholds ---------------------------------------------------------------------------


def days_left(*, until: date, as_of: date) -> int:
    return (until - as_of).days


def threshold_due(*, days_left: int, thresholds: Iterable[int], sent: Iterable[int] = ()) -> int | None:
    """The threshold to send now, or ``None``.

    The smallest threshold crossed (``days_left <= T``), unless it, or a smaller one,
    was already sent. Nothing once the date has passed (``days_left < 0``).
    """
    if days_left < 0:
        return None
    crossed = [t for t in thresholds if days_left <= t]
    if not crossed:
        return None
    due = min(crossed)
    if any(t <= due for t in sent):
        return None
    return due


def filing_urgency(days_left: int) -> str:
    """The seed's levels: 3 days or less URGENT, 7 or less HIGH, otherwise NORMAL."""
    if days_left <= 3:
        return NotificationUrgency.URGENT
    if days_left <= 7:
        return NotificationUrgency.HIGH
    return NotificationUrgency.NORMAL


def expiry_urgency(days_left: int) -> str:
    """A document in its last week is HIGH; earlier reminders are NORMAL."""
    return NotificationUrgency.HIGH if days_left <= 7 else NotificationUrgency.NORMAL


def dedupe_key(*, kind: str, object_id: int, on: date, threshold: int, recipient_id: int) -> str:
    """The key of one reminder. It names the date the reminder counts down to, so a due date
    moved later (or an expiry date corrected) starts its reminders afresh."""
    return f"{kind}:{object_id}@{on.isoformat()}:{threshold}:{recipient_id}"


def dedupe_keys_possible(
    *,
    kind: str,
    objects: Iterable[tuple[int, date]],
    thresholds: Iterable[int],
    recipient_ids: Iterable[int],
) -> list[str]:
    """Every key a run could have written for these (object, date)s and people (to read what was sent)."""
    thresholds, recipient_ids = tuple(thresholds), tuple(recipient_ids)
    return [
        dedupe_key(kind=kind, object_id=o, on=on, threshold=t, recipient_id=r)
        for o, on in objects
        for t in thresholds
        for r in recipient_ids
    ]


def _threshold_for(
    *,
    kind: str,
    object_id: int,
    on: date,
    days: int,
    thresholds: tuple[int, ...],
    person: Person,
    sent_keys: frozenset[str],
) -> int | None:
    """The threshold to send ``person`` now for this object and date (see ``threshold_due``)."""
    sent = {
        t
        for t in thresholds_looked_up(thresholds, kind=kind)
        if dedupe_key(kind=kind, object_id=object_id, on=on, threshold=t, recipient_id=person.user_id) in sent_keys
    }
    return threshold_due(days_left=days, thresholds=thresholds, sent=sent)


def thresholds_looked_up(thresholds: Iterable[int], *, kind: str) -> tuple[int, ...]:
    """The thresholds whose reminders count as sent: the firm's own and the kind's defaults, so a
    firm that sets its own after the defaults' reminders went out never steps back to a larger
    one. (A reminder sent at a threshold the firm used to have, other than a default, is not
    looked up: after such a change, one more reminder may go.)"""
    defaults = EXPIRY_THRESHOLDS if kind == NotificationKind.DOCUMENT_EXPIRY else FILING_THRESHOLDS
    return tuple(sorted(set(thresholds) | set(defaults), reverse=True))


# --- Recipients ---------------------------------------------------------------------------


def expiry_recipients(members: Iterable[Person]) -> list[Person]:
    """Admins, managers and compliance officers (``members`` are active members only)."""
    return [person for person in members if person.role in EXPIRY_ROLES]


def filing_recipients(
    *, members: dict[int, Person], filing: UpcomingFiling
) -> tuple[list[Person], list[SkippedAssignee]]:
    """Admins, managers, tax preparers and compliance officers, plus the filing's assignees.

    An assignee must be in ``members`` (the tenant's active members); one who is not
    (membership removed, user deactivated) is returned as skipped, never as a recipient.
    Each person appears once, however many roles and tasks they have.
    """
    recipients = {p.user_id: p for p in members.values() if p.role in FILING_ROLES}
    skipped = []
    for assignment in filing.assignments:
        person = members.get(assignment.user_id)
        if person is None:
            skipped.append(SkippedAssignee(filing_id=filing.filing_id, user_id=assignment.user_id))
        else:
            recipients.setdefault(person.user_id, person)
    return sorted(recipients.values(), key=lambda p: p.user_id), _unique(skipped)


def _unique(skipped: list[SkippedAssignee]) -> list[SkippedAssignee]:
    return list(dict.fromkeys(skipped))


# --- Texts --------------------------------------------------------------------------------


def when(days: int) -> str:
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    return f"in {days} days"


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _expiry_texts(document: ExpiringDocument, days: int) -> tuple[str, str]:
    title = expiry_title(document_type=document.document_type, client_name=document.client_name, days=days)
    body = (
        f"{document.client_name}'s {document.document_type} (“{document.title}”) expires on "
        f"{long_date(document.expires_on)}, {when(days)}. Upload the renewed document before then "
        f"so that {document.client_name} stays compliant."
    )
    return title, body


_STATUS_PHRASES: dict[str, str] = {
    FilingStatus.DRAFT: "is still a draft",
    FilingStatus.PREPARED: "is prepared but not yet submitted",
}


def filing_title(*, filing_type: str, period: str, client_name: str, days: int, urgency: str | None) -> str:
    """``Urgent: VAT Return 2026-11 for Acme is due in 2 days`` (also a digest's item line)."""
    prefix = "Urgent: " if urgency == NotificationUrgency.URGENT else ""
    return f"{prefix}{filing_type} {period} for {client_name} is due {when(days)}"


def expiry_title(*, document_type: str, client_name: str, days: int) -> str:
    """``TIN Certificate for Acme expires in 9 days`` (also a digest's item line)."""
    return f"{document_type} for {client_name} expires {when(days)}"


def overdue_title(*, filing_type: str, period: str, client_name: str, days_overdue: int) -> str:
    """``Overdue: VAT Return 2026-11 for Acme is 8 days overdue`` (also a digest's item line)."""
    unit = "day" if days_overdue == 1 else "days"
    return f"Overdue: {filing_type} {period} for {client_name} is {days_overdue} {unit} overdue"


def _filing_texts(filing: UpcomingFiling, days: int, urgency: str, tasks: list[str]) -> tuple[str, str]:
    title = filing_title(
        filing_type=filing.filing_type, period=filing.period, client_name=filing.client_name, days=days, urgency=urgency
    )
    body = (
        f"The {filing.filing_type} for period {filing.period} of {filing.client_name} is due on "
        f"{due_phrase(filing.due)}, {when(days)}, and {_STATUS_PHRASES.get(filing.status, 'is not submitted')}. "
        f"Priority: {NotificationUrgency(urgency).label.lower()}."
    )
    if tasks:
        body += " Your task: " + "; ".join(tasks) + "."
    return title, body


# --- Reminders ----------------------------------------------------------------------------


def expiry_reminders(
    *,
    documents: Iterable[ExpiringDocument],
    members: Iterable[Person],
    sent_keys: frozenset[str],
    tenant_name: str,
    as_of: date,
    thresholds: tuple[int, ...] = EXPIRY_THRESHOLDS,
) -> list[Reminder]:
    """The document-expiry reminders due on ``as_of`` (the tenant's local date), at the firm's ``thresholds``."""
    kind = NotificationKind.DOCUMENT_EXPIRY
    recipients = expiry_recipients(members)
    reminders = []
    for document in documents:
        days = days_left(until=document.expires_on, as_of=as_of)
        title, body = _expiry_texts(document, days)
        data = {
            "documentId": document.document_id,
            "clientId": document.client_id,
            "documentTitle": document.title,
            "documentType": document.document_type,
            "clientName": document.client_name,
            "expiresOn": document.expires_on.isoformat(),
            "daysLeft": days,
            "tenantName": tenant_name,
            "asOf": as_of.isoformat(),
        }
        for person in recipients:
            threshold = _threshold_for(
                kind=kind,
                object_id=document.document_id,
                on=document.expires_on,
                days=days,
                thresholds=thresholds,
                person=person,
                sent_keys=sent_keys,
            )
            if threshold is None:
                continue
            reminders.append(
                Reminder(
                    recipient=person,
                    kind=kind,
                    object_id=document.document_id,
                    threshold=threshold,
                    days_left=days,
                    urgency=expiry_urgency(days),
                    title=title,
                    body=body,
                    email_template=EXPIRY_TEMPLATE,
                    email_subject=title,
                    dedupe_key=dedupe_key(
                        kind=kind,
                        object_id=document.document_id,
                        on=document.expires_on,
                        threshold=threshold,
                        recipient_id=person.user_id,
                    ),
                    data=data,
                )
            )
    return reminders


def filing_reminders(
    *,
    filings: Iterable[UpcomingFiling],
    members: Iterable[Person],
    sent_keys: frozenset[str],
    tenant_name: str,
    as_of: date,
    thresholds: tuple[int, ...] = FILING_THRESHOLDS,
) -> tuple[list[Reminder], list[SkippedAssignee]]:
    """The filing reminders due on ``as_of`` (the tenant's local date), counted to each filing's
    effective due date at the firm's ``thresholds``, and the assignees skipped."""
    kind = NotificationKind.FILING_REMINDER
    by_id = {person.user_id: person for person in members}
    reminders, skipped = [], []
    for filing in filings:
        if filing.status not in FILING_STATUSES_REMINDED:
            continue
        days = days_left(until=filing.due_date, as_of=as_of)
        urgency = filing_urgency(days)
        recipients, filing_skipped = filing_recipients(members=by_id, filing=filing)
        skipped += filing_skipped
        data = {
            "filingId": filing.filing_id,
            "clientId": filing.client_id,
            "filingType": filing.filing_type,
            "period": filing.period,
            "clientName": filing.client_name,
            "dueDate": filing.due_date.isoformat(),
            "statutoryDueDate": filing.due.statutory.isoformat(),
            "dueNote": filing.due.moved_note,
            "daysLeft": days,
            "urgency": str(urgency),
            "tenantName": tenant_name,
            "asOf": as_of.isoformat(),
        }
        for person in recipients:
            threshold = _threshold_for(
                kind=kind,
                object_id=filing.filing_id,
                on=filing.due_date,
                days=days,
                thresholds=thresholds,
                person=person,
                sent_keys=sent_keys,
            )
            if threshold is None:
                continue
            tasks = [a.task_title for a in filing.assignments if a.user_id == person.user_id]
            title, body = _filing_texts(filing, days, urgency, tasks)
            reminders.append(
                Reminder(
                    recipient=person,
                    kind=kind,
                    object_id=filing.filing_id,
                    threshold=threshold,
                    days_left=days,
                    urgency=urgency,
                    title=title,
                    body=body,
                    email_template=FILING_TEMPLATE,
                    email_subject=title,
                    dedupe_key=dedupe_key(
                        kind=kind,
                        object_id=filing.filing_id,
                        on=filing.due_date,
                        threshold=threshold,
                        recipient_id=person.user_id,
                    ),
                    data=data,
                )
            )
    return reminders, skipped


# --- Escalations ----------------------------------------------------------------------------


def escalation_step(*, days_overdue: int, every_days: int) -> int | None:
    """The latest escalation step reached, as the days overdue it falls on (1, 1 + every_days,
    1 + 2 × every_days...), or None before the first overdue day."""
    if days_overdue < 1:
        return None
    return 1 + ((days_overdue - 1) // every_days) * every_days


def escalation_recipients(members: Iterable[Person]) -> list[Person]:
    """The firm's admins and managers (``members`` are active members only)."""
    return [person for person in members if person.role in ESCALATION_ROLES]


def _escalation_texts(filing: OverdueFiling, days_overdue: int, every_days: int) -> tuple[str, str]:
    title = overdue_title(
        filing_type=filing.filing_type, period=filing.period, client_name=filing.client_name, days_overdue=days_overdue
    )
    assigned = ", ".join(filing.assignees) if filing.assignees else "nobody"
    state = _STATUS_PHRASES.get(filing.status, "was rejected and must be filed again")
    body = (
        f"The {filing.filing_type} for period {filing.period} of {filing.client_name} was due on "
        f"{due_phrase(filing.due)} and {state}. Assigned to: {assigned}. "
        f"You will be reminded every {every_days} days until it is filed."
    )
    return title, body


def filing_escalations(
    *,
    filings: Iterable[OverdueFiling],
    members: Iterable[Person],
    sent_keys: frozenset[str],
    tenant_name: str,
    as_of: date,
    every_days: int,
) -> list[Reminder]:
    """The escalations due on ``as_of`` (the tenant's local date): each overdue, unfiled filing
    to the firm's admins and managers, on its first overdue day and every ``every_days`` after.

    URGENT, so they are emailed at once (never held for a digest) unless the person turned
    the kind off. A missed day sends the step then due, never two steps at once.
    """
    kind = NotificationKind.FILING_ESCALATION
    recipients = escalation_recipients(members)
    reminders = []
    for filing in filings:
        if filing.status not in FILING_STATUSES_ESCALATED:
            continue
        days_overdue = (as_of - filing.due.effective).days
        step = escalation_step(days_overdue=days_overdue, every_days=every_days)
        if step is None:
            continue
        title, body = _escalation_texts(filing, days_overdue, every_days)
        data = {
            "filingId": filing.filing_id,
            "clientId": filing.client_id,
            "filingType": filing.filing_type,
            "period": filing.period,
            "clientName": filing.client_name,
            "dueDate": filing.due.effective.isoformat(),
            "statutoryDueDate": filing.due.statutory.isoformat(),
            "dueNote": filing.due.moved_note,
            "daysOverdue": days_overdue,
            "status": filing.status,
            "assignees": list(filing.assignees),
            "everyDays": every_days,
            "urgency": str(NotificationUrgency.URGENT),
            "tenantName": tenant_name,
            "asOf": as_of.isoformat(),
        }
        for person in recipients:
            key = dedupe_key(
                kind=kind,
                object_id=filing.filing_id,
                on=filing.due.effective,
                threshold=step,
                recipient_id=person.user_id,
            )
            if key in sent_keys:
                continue
            reminders.append(
                Reminder(
                    recipient=person,
                    kind=kind,
                    object_id=filing.filing_id,
                    threshold=step,
                    days_left=-days_overdue,
                    urgency=NotificationUrgency.URGENT,
                    title=title,
                    body=body,
                    email_template=ESCALATION_TEMPLATE,
                    email_subject=title,
                    dedupe_key=key,
                    data=data,
                )
            )
    return reminders
