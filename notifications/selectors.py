"""Reads of the notifications domain: what the reminder rules need, for one tenant.

Each selector is one query scoped to its tenant, whatever the number of documents,
filings or people: a reminder run costs the same handful of queries for a firm with
ten documents and for one with a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db import connection
from django.db.models import Exists, OuterRef, Q

from compliance.calendars import MAX_ROLL_DAYS, DueDate, calendar_of, effective_due_date
from compliance.models import Document, Filing, FilingTask, Membership, Tenant
from notifications.exceptions import UnknownMember
from notifications.models import NotificationPreference
from notifications.rules import (
    EXPIRY_THRESHOLDS,
    FILING_STATUSES_ESCALATED,
    FILING_STATUSES_REMINDED,
    FILING_THRESHOLDS,
    ExpiringDocument,
    FilingAssignment,
    OverdueFiling,
    Person,
    UpcomingFiling,
)


def members_active(*, tenant: Tenant) -> list[Person]:
    """The tenant's members whose user account is active, every role."""
    rows = (
        Membership.objects.filter(tenant=tenant, user__is_active=True)
        .order_by("user_id")
        .values_list("user_id", "role", "user__email", "user__first_name", "user__last_name", "user__username")
    )
    return [
        Person(user_id=user_id, role=role, email=email, name=f"{first} {last}".strip() or username)
        for user_id, role, email, first, last, username in rows
    ]


def documents_expiring(*, tenant: Tenant, as_of: date, horizon: int = max(EXPIRY_THRESHOLDS)) -> list[ExpiringDocument]:
    """Active clients' documents expiring from ``as_of`` to ``horizon`` days later (the largest
    threshold), the one that counts only.

    The document that counts for a (client, document type) is the one that lasts longest,
    as in the compliance score: no expiry date beats any date, a later date beats an
    earlier one (equal dates: the higher id). Once a renewal is uploaded, the old
    document drops out here.
    """
    outlasted_by = Document.objects.filter(
        tenant_id=OuterRef("tenant_id"),
        client_id=OuterRef("client_id"),
        document_type_id=OuterRef("document_type_id"),
    ).filter(
        Q(expires_on__isnull=True)
        | Q(expires_on__gt=OuterRef("expires_on"))
        | Q(expires_on=OuterRef("expires_on"), pk__gt=OuterRef("pk"))
    )
    rows = (
        Document.objects.filter(
            tenant=tenant,
            client__is_active=True,
            expires_on__gte=as_of,
            expires_on__lte=as_of + timedelta(days=horizon),
        )
        .filter(~Exists(outlasted_by))
        .order_by("expires_on", "pk")
        .values_list("pk", "client_id", "client__name", "title", "document_type__name", "expires_on")
    )
    return [
        ExpiringDocument(
            document_id=pk,
            client_id=client_id,
            client_name=client_name,
            title=title,
            document_type=type_name,
            expires_on=expires_on,
        )
        for pk, client_id, client_name, title, type_name, expires_on in rows
        if expires_on is not None  # always, by the filter; narrows the type
    ]


def _upcoming(tenant: Tenant, as_of: date, horizon: int, prefix: str = "") -> dict[str, object]:
    # A statutory date up to MAX_ROLL_DAYS before as_of may be effectively due on or after it
    # (a calendar moved it); those that are not are dropped after the dates are worked out.
    return {
        f"{prefix}tenant": tenant,
        f"{prefix}client__is_active": True,
        f"{prefix}status__in": FILING_STATUSES_REMINDED,
        f"{prefix}due_date__gte": as_of - timedelta(days=MAX_ROLL_DAYS),
        f"{prefix}due_date__lte": as_of + timedelta(days=horizon),
    }


# What the reminder and escalation runs read of a filing, in this order.
_FILING_COLUMNS = (
    "pk",
    "client_id",
    "client__name",
    "filing_type",
    "period",
    "due_date",
    "status",
    "holiday_country",
    "holiday_subdivision",
)


def filings_upcoming(*, tenant: Tenant, as_of: date, horizon: int = max(FILING_THRESHOLDS)) -> list[UpcomingFiling]:
    """Active clients' draft or prepared filings effectively due from ``as_of`` to ``horizon`` days
    later, with their assignees. Each counts to its effective due date: its statutory date, moved
    to the next business day under its calendar (its own, else the tenant's; none: no move).

    Two queries: the filings, then the tasks of the same filings, found by the same
    conditions through the (tenant, due date) index rather than by a list of ids.
    """
    rows = list(
        Filing.objects.filter(**_upcoming(tenant, as_of, horizon))
        .order_by("due_date", "pk")
        .values_list(*_FILING_COLUMNS)
    )
    assignments: dict[int, list[FilingAssignment]] = {}
    if rows:
        tasks = (
            FilingTask.objects.filter(**_upcoming(tenant, as_of, horizon, prefix="filing__"))
            .order_by("filing_id", "assignee_id", "pk")
            .values_list("filing_id", "assignee_id", "title")
        )
        for filing_id, assignee_id, title in tasks:
            assignments.setdefault(filing_id, []).append(FilingAssignment(user_id=assignee_id, task_title=title))
    upcoming = []
    for pk, client_id, client_name, filing_type, period, due_date, status, country, subdivision in rows:
        due = _due(tenant, due_date, country, subdivision)
        if not as_of <= due.effective <= as_of + timedelta(days=horizon):
            continue
        upcoming.append(
            UpcomingFiling(
                filing_id=pk,
                client_id=client_id,
                client_name=client_name,
                filing_type=filing_type,
                period=period,
                due_date=due.effective,
                status=status,
                assignments=tuple(assignments.get(pk, ())),
                statutory_due_date=due.statutory,
                moved_because=due.reasons,
            )
        )
    return sorted(upcoming, key=lambda f: (f.due_date, f.filing_id))


def _due(tenant: Tenant, due_date: date, country: str, subdivision: str) -> DueDate:
    calendar = calendar_of(
        country=tenant.holiday_country,
        subdivision=tenant.holiday_subdivision,
        override_country=country,
        override_subdivision=subdivision,
    )
    return effective_due_date(due=due_date, calendar=calendar)


def filings_overdue(*, tenant: Tenant, as_of: date) -> list[OverdueFiling]:
    """Active clients' filings past their effective due date on ``as_of`` and not filed (draft,
    prepared or rejected), with the names of their assignees. Two queries.
    """
    open_past = {
        "tenant": tenant,
        "client__is_active": True,
        "status__in": FILING_STATUSES_ESCALATED,
        "due_date__lt": as_of,  # the effective date is never earlier than the statutory one
    }
    rows = list(Filing.objects.filter(**open_past).order_by("due_date", "pk").values_list(*_FILING_COLUMNS))
    names: dict[int, list[str]] = {}
    if rows:
        tasks = (
            FilingTask.objects.filter(**{f"filing__{key}": value for key, value in open_past.items()})
            .order_by("filing_id", "assignee_id", "pk")
            .values_list("filing_id", "assignee__first_name", "assignee__last_name", "assignee__username")
        )
        for filing_id, first, last, username in tasks:
            name = f"{first} {last}".strip() or username
            if name not in names.setdefault(filing_id, []):
                names[filing_id].append(name)
    overdue = []
    for pk, client_id, client_name, filing_type, period, due_date, status, country, subdivision in rows:
        due = _due(tenant, due_date, country, subdivision)
        if due.effective >= as_of:
            continue
        overdue.append(
            OverdueFiling(
                filing_id=pk,
                client_id=client_id,
                client_name=client_name,
                filing_type=filing_type,
                period=period,
                due=due,
                status=status,
                assignees=tuple(names.get(pk, ())),
            )
        )
    return overdue


def dedupe_keys_sent(*, tenant: Tenant, keys: list[str]) -> frozenset[str]:
    """Which of ``keys`` the tenant's notifications already carry (one lookup in the unique index)."""
    if not keys:
        return frozenset()
    # One array parameter, not an IN list of hundreds: the ORM would compile and send each
    # key as a parameter of its own, which cost more than the lookup itself.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT dedupe_key FROM notifications_notification WHERE tenant_id = %s AND dedupe_key = ANY(%s::text[])",
            [tenant.pk, keys],
        )
        return frozenset(key for (key,) in cursor.fetchall())


# --- Preferences and suppressions ----------------------------------------------------------


def membership_get(*, tenant: Tenant, user_id: int) -> Membership:
    """The user's membership of ``tenant``; ``UnknownMember`` if there is none."""
    membership = Membership.objects.filter(tenant=tenant, user_id=user_id).first()
    if membership is None:
        raise UnknownMember(tenant_id=tenant.pk, user_id=user_id)
    return membership


def preferences_chosen(*, tenant: Tenant, user_id: int) -> dict[str, str]:
    """The kinds this member chose a setting for, and the setting."""
    return dict(NotificationPreference.objects.filter(tenant=tenant, user_id=user_id).values_list("kind", "email"))


@dataclass(frozen=True)
class RoutingFacts:
    """What a run needs to route its emails: choices by (user, kind), suppressed addresses (lower case)."""

    chosen: dict[tuple[int, str], str] = field(default_factory=dict)
    suppressed: frozenset[str] = frozenset()


# One query: the choices of these people in this tenant, and which of these addresses are
# suppressed for this tenant or for every tenant (both through unique indexes).
_ROUTING_FACTS_SQL = """
SELECT user_id, kind, email FROM notifications_notificationpreference
 WHERE tenant_id = %(tenant_id)s AND user_id = ANY(%(user_ids)s)
UNION ALL
SELECT NULL, NULL, email FROM notifications_suppression
 WHERE email = ANY(%(addresses)s) AND (tenant_id = %(tenant_id)s OR tenant_id IS NULL)
"""


def email_routing_facts(*, tenant: Tenant, user_ids: list[int], addresses: list[str]) -> RoutingFacts:
    """The tenant's email choices for these people and which of these addresses are suppressed, in one query."""
    if not user_ids and not addresses:
        return RoutingFacts()
    with connection.cursor() as cursor:
        cursor.execute(
            _ROUTING_FACTS_SQL,
            {"tenant_id": tenant.pk, "user_ids": user_ids, "addresses": [a.strip().lower() for a in addresses]},
        )
        rows = cursor.fetchall()
    return RoutingFacts(
        chosen={(user_id, kind): email for user_id, kind, email in rows if user_id is not None},
        suppressed=frozenset(email for user_id, _, email in rows if user_id is None),
    )
