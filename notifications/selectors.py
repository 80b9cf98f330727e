"""Reads of the notifications domain: what the reminder rules need, for one tenant.

Each selector is one query scoped to its tenant, whatever the number of documents,
filings or people: a reminder run costs the same handful of queries for a firm with
ten documents and for one with a thousand.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import Exists, OuterRef, Q

from compliance.models import Document, Filing, FilingTask, Membership, Tenant
from notifications.models import Notification
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
