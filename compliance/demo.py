"""Deterministic, realistic demo data for ``seed_demo``.

Each tenant is generated from its own random stream (``seed`` and the tenant's
number), so ``--tenants 10`` and ``--tenants 100`` agree on the first ten, and
each tenant is written in one transaction keyed by its slug: a second run with
the same arguments finds every slug and adds nothing. Dates are relative to
``as_of``, so the data always has documents expiring and filings falling due.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from compliance.models import (
    Client,
    Document,
    DocumentType,
    Filing,
    FilingStatus,
    FilingTask,
    Membership,
    MembershipRole,
    NotificationEmailDefault,
    Requirement,
    Tenant,
)

DOCUMENT_TYPES = [
    ("tin-certificate", "TIN Certificate"),
    ("vat-registration", "VAT Registration Certificate"),
    ("business-license", "Business License"),
    ("tax-clearance", "Tax Clearance Certificate"),
    ("incorporation-certificate", "Certificate of Incorporation"),
    ("audited-financials", "Audited Financial Statements"),
    ("insurance-certificate", "Professional Indemnity Insurance"),
    ("director-id", "Director Identification"),
    ("beneficial-ownership", "Beneficial Ownership Register"),
    ("bank-mandate", "Bank Mandate"),
    ("payroll-registration", "Payroll (PAYE) Registration"),
    ("annual-return", "Annual Return Confirmation"),
]
FILING_TYPES = ["VAT Return", "PAYE Return", "Corporate Income Tax", "Withholding Tax", "Annual Return"]
TIMEZONES = ["UTC", "Europe/London", "Africa/Nairobi", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]
# The holiday calendar of a firm in each zone (compliance/calendars.py); UTC firms have none.
CALENDARS = {
    "Europe/London": ("GB", "ENG"),
    "Africa/Nairobi": ("KE", ""),
    "America/New_York": ("US", "NY"),
    "Asia/Kolkata": ("IN", ""),
    "Pacific/Auckland": ("NZ", ""),
}
FIRM_WORDS = ["Kestrel", "Granite", "Cedar", "Harbor", "Summit", "Meridian", "Beacon", "Atlas", "Willow", "Orion"]
FIRM_KINDS = ["Accounting", "Tax Advisors", "& Partners", "Audit Group", "Consulting"]
CLIENT_WORDS = ["Acme", "Blue River", "Northwind", "Sunrise", "Greenfield", "Ironbridge", "Silverline", "Redwood"]
CLIENT_KINDS = ["Holdings", "Trading", "Logistics", "Foods", "Pharma", "Construction", "Retail", "Energy"]
FIRST_NAMES = ["Amina", "Brian", "Chloe", "David", "Esther", "Farid", "Grace", "Hugo", "Ivy", "James", "Wanjiru"]
LAST_NAMES = ["Otieno", "Smith", "Okafor", "Müller", "Patel", "Garcia", "Kim", "Nakamura", "Mensah", "Brown"]
# Every role, two tax preparers (the usual task assignees).
STAFF_ROLES = [
    MembershipRole.ADMIN,
    MembershipRole.MANAGER,
    MembershipRole.COMPLIANCE_OFFICER,
    MembershipRole.TAX_PREPARER,
    MembershipRole.TAX_PREPARER,
    MembershipRole.VIEWER,
]
DEMO_PASSWORD_HASH = "!demo-user-without-password"  # noqa: S105 - unusable: demo staff cannot log in


@dataclass
class SeedResult:
    tenants_created: int = 0
    tenants_skipped: int = 0
    clients: int = 0
    documents: int = 0
    filings: int = 0


def tenant_slug(number: int) -> str:
    return f"demo-{number:04d}"


def demo_data_seed(
    *,
    tenants: int,
    clients_per_tenant: int,
    documents_per_client: int,
    seed: int,
    as_of: date,
    on_tenant: Callable[[], None] = lambda: None,
) -> SeedResult:
    """Create the demo tenants that do not exist yet; return what was written."""
    document_types = document_types_ensure()
    existing = set(Tenant.objects.filter(slug__startswith="demo-").values_list("slug", flat=True))
    result = SeedResult()
    for number in range(1, tenants + 1):
        if tenant_slug(number) in existing:
            result.tenants_skipped += 1
        else:
            rng = random.Random(f"{seed}:{number}")
            _tenant_create(rng, number, clients_per_tenant, documents_per_client, document_types, as_of, result)
            result.tenants_created += 1
        on_tenant()
    return result


def document_types_ensure() -> list[DocumentType]:
    DocumentType.objects.bulk_create(
        [DocumentType(code=code, name=name) for code, name in DOCUMENT_TYPES], ignore_conflicts=True
    )
    return list(DocumentType.objects.filter(code__in=[code for code, _ in DOCUMENT_TYPES]).order_by("code"))


@transaction.atomic
def _tenant_create(
    rng: random.Random,
    number: int,
    clients_per_tenant: int,
    documents_per_client: int,
    document_types: list[DocumentType],
    as_of: date,
    result: SeedResult,
) -> None:
    slug = tenant_slug(number)
    zone = rng.choice(TIMEZONES)
    # By number, so the random streams stay as they were: every fourth firm outside UTC keeps
    # no holiday calendar (its due dates never move), and every fifth sets its own thresholds.
    country, subdivision = CALENDARS.get(zone, ("", "")) if number % 4 else ("", "")
    tenant = Tenant.objects.create(
        name=f"{rng.choice(FIRM_WORDS)} {rng.choice(FIRM_KINDS)} {number}",
        slug=slug,
        timezone=zone,
        # Daily digests: the first morning then queues the urgent emails and one digest per member,
        # not thousands of reminders (see _preferences_create and the README's "The first run").
        notification_email_default=NotificationEmailDefault.DAILY_DIGEST,
        holiday_country=country,
        holiday_subdivision=subdivision,
        expiry_reminder_days=[60, 30, 7] if number % 5 == 0 else None,
        filing_reminder_days=[10, 5, 1] if number % 5 == 0 else None,
    )
    staff = _staff_create(rng, tenant)
    assignees = [
        user for user, role in staff if role in (MembershipRole.TAX_PREPARER, MembershipRole.COMPLIANCE_OFFICER)
    ]
    clients = Client.objects.bulk_create(
        [
            Client(
                tenant=tenant,
                name=f"{rng.choice(CLIENT_WORDS)} {rng.choice(CLIENT_KINDS)} {n}",
                is_active=rng.random() > 0.03,
            )
            for n in range(1, clients_per_tenant + 1)
        ]
    )
    requirements, documents, filings = [], [], []
    for client in clients:
        required = rng.sample(document_types, k=rng.randint(3, 6))
        requirements += [Requirement(client=client, document_type=dt) for dt in required]
        documents += _documents_for(rng, tenant, client, required, document_types, documents_per_client, as_of)
        filings += _filings_for(rng, tenant, client, as_of)
    Requirement.objects.bulk_create(requirements, batch_size=2000)
    Document.objects.bulk_create(documents, batch_size=2000)
    Filing.objects.bulk_create(filings, batch_size=2000)
    FilingTask.objects.bulk_create(
        [
            FilingTask(
                filing=f,
                assignee=rng.choice(assignees),
                title=f"Prepare {f.filing_type} {f.period}",
                is_done=f.status in ("submitted", "accepted"),
            )
            for f in filings
        ],
        batch_size=2000,
    )
    result.clients += len(clients)
    result.documents += len(documents)
    result.filings += len(filings)


def _staff_create(rng: random.Random, tenant: Tenant) -> list[tuple[Any, str]]:
    user_model = get_user_model()
    users = []
    for index, role in enumerate(STAFF_ROLES, start=1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        users.append(
            user_model(
                username=f"{tenant.slug}-{role.replace('_', '-')}-{index}",
                email=f"{role.replace('_', '.')}{index}@{tenant.slug}.example.com",
                first_name=first,
                last_name=last,
                password=DEMO_PASSWORD_HASH,
            )
        )
    # A tenant deleted by hand leaves its staff behind: reuse them rather than fail.
    user_model.objects.bulk_create(users, ignore_conflicts=True)
    by_name = user_model.objects.in_bulk([user.username for user in users], field_name="username")
    users = [by_name[user.username] for user in users]
    Membership.objects.bulk_create(
        [Membership(tenant=tenant, user=user, role=role) for user, role in zip(users, STAFF_ROLES, strict=True)]
    )
    _preferences_create(tenant, users)
    return list(zip(users, STAFF_ROLES, strict=True))


# Members who chose otherwise than their firm's default (the daily digest), by their place in
# STAFF_ROLES: the admin hears of compliance alerts at once, the manager leaves expiring documents
# to the compliance officer. (Urgent reminders and escalations go at once whatever one chose.)
DEMO_PREFERENCES = (
    (0, "compliance_alert", "immediate"),
    (1, "document_expiry", "off"),
)


def _preferences_create(tenant: Tenant, users: list[Any]) -> None:
    from notifications.models import NotificationPreference

    NotificationPreference.objects.bulk_create(
        [
            NotificationPreference(tenant=tenant, user=users[at], kind=kind, email=email)
            for at, kind, email in DEMO_PREFERENCES
        ]
    )


def _expiry(rng: random.Random, as_of: date) -> date | None:
    """Spread: expired, expiring over the next 60 days, far off, or never."""
    bucket = rng.random()
    if bucket < 0.15:
        return as_of - timedelta(days=rng.randint(1, 400))
    if bucket < 0.45:
        return as_of + timedelta(days=rng.randint(0, 60))
    if bucket < 0.85:
        return as_of + timedelta(days=rng.randint(61, 1100))
    return None


def _documents_for(
    rng: random.Random,
    tenant: Tenant,
    client: Client,
    required: list[DocumentType],
    all_types: list[DocumentType],
    count: int,
    as_of: date,
) -> list[Document]:
    # About one required type in six is left missing; the rest of the budget goes to
    # older versions (renewals) and to documents the client holds without a requirement.
    held = [dt for dt in required if rng.random() > 0.16]
    types = (held + [rng.choice(all_types) for _ in range(count)])[:count]
    return [
        Document(
            tenant=tenant,
            client=client,
            document_type=dt,
            title=f"{dt.name} ({client.name})",
            expires_on=_expiry(rng, as_of),
        )
        for dt in types
    ]


def _status_weights(days_left: int) -> list[int]:
    """How likely each status is (draft, prepared, submitted, accepted, rejected) for a filing due
    in ``days_left`` days: a well-run practice files on time, so few filings are open past their
    date (each is escalated on the first morning), and most due within a week are prepared or filed."""
    if days_left < 0:
        return [1, 1, 12, 24, 1]
    if days_left <= 7:
        return [2, 4, 4, 1, 0]
    return [6, 3, 1, 1, 1]


def _filings_for(rng: random.Random, tenant: Tenant, client: Client, as_of: date) -> list[Filing]:
    filings = []
    for filing_type in rng.sample(FILING_TYPES, k=rng.randint(2, 5)):
        due = as_of + timedelta(days=rng.randint(-60, 60))
        status = rng.choices(FilingStatus.values, weights=_status_weights((due - as_of).days))[0]
        filings.append(
            Filing(
                tenant=tenant,
                client=client,
                filing_type=filing_type,
                period=f"{due:%Y-%m}",
                due_date=due,
                status=status,
            )
        )
    return filings
