"""Reads of the compliance domain."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import OuterRef, Subquery

from compliance.calendars import calendar_of, effective_due_date
from compliance.conf import ScoringPolicy
from compliance.exceptions import UnknownTenant
from compliance.models import (
    Client,
    ComplianceScore,
    Document,
    Filing,
    Membership,
    MembershipRole,
    Requirement,
    Tenant,
)
from compliance.scoring import (
    OVERDUE_STATUSES,
    UPCOMING_STATUSES,
    ClientFacts,
    HeldDocument,
    OpenFiling,
    RequiredDocument,
)


def tenant_get(reference: int | str, *, active_only: bool = True) -> Tenant:
    """A tenant by id (an int, or digits) or slug; ``UnknownTenant`` if there is none."""
    tenants = Tenant.objects.filter(is_active=True) if active_only else Tenant.objects.all()
    if isinstance(reference, bool):
        raise UnknownTenant(reference)
    if isinstance(reference, int):
        found = tenants.filter(pk=reference).first()
    elif isinstance(reference, str):
        # A slug first: a firm whose slug is "2024" must not be mistaken for tenant id 2024.
        found = tenants.filter(slug=reference).first()
        if found is None and reference.isdigit():
            found = tenants.filter(pk=int(reference)).first()
    else:
        found = None
    if found is None:
        inactive = active_only and _tenant_exists(reference)
        raise UnknownTenant(reference, inactive=inactive)
    return found


def _tenant_exists(reference: int | str) -> bool:
    """Whether a tenant, active or not, answers to this id or slug (to say why it was refused)."""
    if isinstance(reference, int):
        return Tenant.objects.filter(pk=reference).exists()
    if not isinstance(reference, str):
        return False
    return Tenant.objects.filter(slug=reference).exists() or (
        reference.isdigit() and Tenant.objects.filter(pk=int(reference)).exists()
    )


def tenant_local_date(tenant: Tenant, at: datetime) -> date:
    """The calendar date at ``at`` in the tenant's own time zone (what "today" means to its staff)."""
    return at.astimezone(tenant.zone).date()


def tick_time(timestamp: int | None, now: datetime) -> datetime:
    """A periodic job's scheduled instant (procrastinate passes it), else ``now``."""
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp is not None else now


# --- The refresh's reads: a whole tenant in a constant number of queries -------------------


@dataclass(frozen=True)
class ScoringSubject:
    """An active client's facts, and its latest score before the day being scored."""

    facts: ClientFacts
    previous_level: str | None = None
    previous_score: int | None = None


def tenant_scoring_subjects(*, tenant: Tenant, as_of: date, policy: ScoringPolicy) -> list[ScoringSubject]:
    """Every active client of ``tenant`` with what the policy needs, in four queries.

    One query each for the clients (with their latest earlier score, an index lookup per
    client on the (client, calculated_on) unique index), their requirements, the tenant's
    documents and its filings; rows are grouped by client here, never fetched per client.
    """
    # Correlated on the client alone (a client of this tenant): a backward scan of the
    # (client, calculated_on) unique index, one row, however long the history.
    earlier = ComplianceScore.objects.filter(client_id=OuterRef("pk"), calculated_on__lt=as_of).order_by(
        "-calculated_on"
    )
    clients = list(
        Client.objects.filter(tenant=tenant, is_active=True)
        .annotate(
            previous_level=Subquery(earlier.values("level")[:1]), previous_score=Subquery(earlier.values("score")[:1])
        )
        .order_by("pk")
        .values_list("pk", "name", "previous_level", "previous_score")
    )
    required: dict[int, list[RequiredDocument]] = defaultdict(list)
    for client_id, type_id, type_name in Requirement.objects.filter(
        client__tenant=tenant, client__is_active=True
    ).values_list("client_id", "document_type_id", "document_type__name"):
        required[client_id].append(RequiredDocument(type_id, type_name))
    documents: dict[int, list[HeldDocument]] = defaultdict(list)
    # The whole tenant: documents of inactive clients are few and simply not looked up.
    for doc_id, client_id, type_id, expires_on in Document.objects.filter(tenant=tenant).values_list(
        "pk", "client_id", "document_type_id", "expires_on"
    ):
        documents[client_id].append(HeldDocument(doc_id, type_id, expires_on))
    filings: dict[int, list[OpenFiling]] = defaultdict(list)
    # Only filings that could count (an open status, due by the end of the upcoming
    # window); the policy still decides which do.
    could_count = Filing.objects.filter(
        tenant=tenant,
        status__in=OVERDUE_STATUSES | UPCOMING_STATUSES,
        due_date__lte=as_of + timedelta(days=policy.upcoming_days),
    )
    # Each counts from its effective due date: a filing due on a weekend or a holiday of its
    # calendar is not overdue before the next business day (compliance/calendars.py).
    for pk, client_id, filing_type, period, due_date, status, country, subdivision in could_count.values_list(
        "pk", "client_id", "filing_type", "period", "due_date", "status", "holiday_country", "holiday_subdivision"
    ):
        calendar = calendar_of(
            country=tenant.holiday_country,
            subdivision=tenant.holiday_subdivision,
            override_country=country,
            override_subdivision=subdivision,
        )
        effective = effective_due_date(due=due_date, calendar=calendar).effective
        filings[client_id].append(OpenFiling(pk, filing_type, period, effective, status))
    return [
        ScoringSubject(
            facts=ClientFacts(
                client_id=pk,
                name=name,
                required=tuple(required[pk]),
                documents=tuple(documents[pk]),
                filings=tuple(filings[pk]),
            ),
            previous_level=previous_level,
            previous_score=previous_score,
        )
        for pk, name, previous_level, previous_score in clients
    ]


def tenant_alert_recipients(*, tenant: Tenant) -> list[Membership]:
    """The tenant's active admins and compliance officers (one query), who get compliance alerts."""
    return list(
        Membership.objects.filter(
            tenant=tenant,
            role__in=[MembershipRole.ADMIN, MembershipRole.COMPLIANCE_OFFICER],
            user__is_active=True,
        )
        .select_related("user")
        .order_by("user_id")
    )


def client_score_history(*, client: Client, limit: int = 90) -> list[ComplianceScore]:
    """The client's last ``limit`` daily scores, oldest first (one query)."""
    recent = ComplianceScore.objects.filter(tenant_id=client.tenant_id, client=client).order_by("-calculated_on")
    return list(reversed(recent.only("calculated_on", "score", "level")[:limit]))
