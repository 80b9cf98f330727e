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

from compliance.models import Document, Filing, FilingTask, Membership, Tenant
from notifications.exceptions import UnknownMember
from notifications.models import Notification, NotificationPreference
from notifications.rules import (
    EXPIRY_THRESHOLDS,
    FILING_STATUSES_REMINDED,
    FILING_THRESHOLDS,
    ExpiringDocument,
    FilingAssignment,
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


def documents_expiring(*, tenant: Tenant, as_of: date) -> list[ExpiringDocument]:
    """Active clients' documents expiring from ``as_of`` to the largest threshold, the one that counts only.

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
            expires_on__lte=as_of + timedelta(days=max(EXPIRY_THRESHOLDS)),
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


def _upcoming(tenant: Tenant, as_of: date, prefix: str = "") -> dict[str, object]:
    return {
        f"{prefix}tenant": tenant,
        f"{prefix}client__is_active": True,
        f"{prefix}status__in": FILING_STATUSES_REMINDED,
        f"{prefix}due_date__gte": as_of,
        f"{prefix}due_date__lte": as_of + timedelta(days=max(FILING_THRESHOLDS)),
    }


def filings_upcoming(*, tenant: Tenant, as_of: date) -> list[UpcomingFiling]:
    """Active clients' draft or prepared filings due from ``as_of`` to the largest threshold, with their assignees.

    Two queries: the filings, then the tasks of the same filings, found by the same
    conditions through the (tenant, due date) index rather than by a list of ids.
    """
    rows = list(
        Filing.objects.filter(**_upcoming(tenant, as_of))
        .order_by("due_date", "pk")
        .values_list("pk", "client_id", "client__name", "filing_type", "period", "due_date", "status")
    )
    assignments: dict[int, list[FilingAssignment]] = {}
    if rows:
        tasks = (
            FilingTask.objects.filter(**_upcoming(tenant, as_of, prefix="filing__"))
            .order_by("filing_id", "assignee_id", "pk")
            .values_list("filing_id", "assignee_id", "title")
        )
        for filing_id, assignee_id, title in tasks:
            assignments.setdefault(filing_id, []).append(FilingAssignment(user_id=assignee_id, task_title=title))
    return [
        UpcomingFiling(
            filing_id=pk,
            client_id=client_id,
            client_name=client_name,
            filing_type=filing_type,
            period=period,
            due_date=due_date,
            status=status,
            assignments=tuple(assignments.get(pk, ())),
        )
        for pk, client_id, client_name, filing_type, period, due_date, status in rows
    ]


def dedupe_keys_sent(*, tenant: Tenant, keys: list[str]) -> frozenset[str]:
    """Which of ``keys`` the tenant's notifications already carry (one lookup in the unique index)."""
    if not keys:
        return frozenset()
    return frozenset(
        Notification.objects.filter(tenant=tenant, dedupe_key__in=keys).values_list("dedupe_key", flat=True)
    )


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
