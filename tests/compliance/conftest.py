"""Fixtures of the compliance tests: tenants with clients in a known state."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from compliance.models import ComplianceScore
from tests.factories import ClientFactory, DocumentFactory, DocumentTypeFactory, FilingFactory, RequirementFactory

AS_OF = date(2026, 11, 29)


@pytest.fixture
def as_of() -> date:
    return AS_OF


@pytest.fixture
def tin(db):
    return DocumentTypeFactory(code="tin-certificate", name="TIN Certificate")


@pytest.fixture
def make_client(db, tin):
    """``make_client(tenant, state)``: a client whose score on AS_OF is green (100),
    amber (75: a missing TIN and an upcoming filing) or red (40: also two overdue filings)."""

    def make(tenant, state="green", **fields):
        client = ClientFactory(tenant=tenant, **fields)
        RequirementFactory(client=client, document_type=tin)
        if state == "green":
            DocumentFactory(client=client, document_type=tin, expires_on=None)
            return client
        FilingFactory(client=client, due_date=AS_OF + timedelta(days=3), status="draft")
        if state == "red":
            FilingFactory(client=client, due_date=AS_OF - timedelta(days=3), status="draft")
            FilingFactory(client=client, due_date=AS_OF - timedelta(days=9), status="rejected")
        return client

    return make


@pytest.fixture
def past_score(db):
    """``past_score(client, level, days_ago=1)``: a stored score before AS_OF."""

    def make(client, level, days_ago=1, score=None):
        value = score if score is not None else {"green": 100, "amber": 70, "red": 30}[level]
        return ComplianceScore.objects.create(
            tenant=client.tenant,
            client=client,
            score=value,
            level=level,
            calculated_on=AS_OF - timedelta(days=days_ago),
            calculated_at=timezone.now(),
        )

    return make
