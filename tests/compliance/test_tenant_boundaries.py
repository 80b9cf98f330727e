"""Tenant data never crosses tenants: refused by validation and by the database."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from compliance.models import ComplianceScore, Document, Filing, FilingTask
from tests.factories import ClientFactory, DocumentTypeFactory, FilingFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_tenants_client(tenant):
    return ClientFactory(tenant=TenantFactory())


def test_document_for_another_tenants_client_fails_validation(tenant, other_tenants_client):
    document = Document(tenant=tenant, client=other_tenants_client, document_type=DocumentTypeFactory(), title="TIN")
    with pytest.raises(ValidationError, match="another tenant"):
        document.full_clean()


@pytest.mark.parametrize("model", [Document, Filing, ComplianceScore])
def test_database_refuses_a_client_of_another_tenant(tenant, other_tenants_client, model):
    fields = {
        Document: {"document_type": DocumentTypeFactory(), "title": "TIN"},
        Filing: {"filing_type": "VAT", "period": "2026-10", "due_date": "2026-11-30"},
        ComplianceScore: {
            "score": 90,
            "level": "green",
            "calculated_on": "2026-11-29",
            "calculated_at": "2026-11-29T02:00Z",
        },
    }[model]
    with pytest.raises(IntegrityError, match="same_tenant_fk"), transaction.atomic():
        # bulk_create skips validation, as a careless import script would.
        model.objects.bulk_create([model(tenant=tenant, client=other_tenants_client, **fields)])


def test_same_tenant_document_is_accepted(tenant):
    document = Document(
        tenant=tenant, client=ClientFactory(tenant=tenant), document_type=DocumentTypeFactory(), title="TIN"
    )
    document.full_clean()
    document.save()
    assert Document.objects.filter(tenant=tenant).count() == 1


def test_task_assignee_outside_the_tenant_fails_validation(tenant, member_of):
    filing = FilingFactory(client=ClientFactory(tenant=tenant))
    outsider = member_of(TenantFactory())
    task = FilingTask(filing=filing, assignee=outsider, title="Prepare")
    with pytest.raises(ValidationError, match="not a member"):
        task.full_clean()


def test_database_refuses_a_task_assignee_outside_the_tenant(tenant):
    filing = FilingFactory(client=ClientFactory(tenant=tenant))
    with pytest.raises(IntegrityError, match="not a member"), transaction.atomic():
        FilingTask.objects.create(filing=filing, assignee=UserFactory(), title="Prepare")


def test_task_assignee_who_is_a_member_is_accepted(tenant, member_of):
    filing = FilingFactory(client=ClientFactory(tenant=tenant))
    task = FilingTask(filing=filing, assignee=member_of(tenant, "tax_preparer"), title="Prepare")
    task.full_clean()
    task.save()
    assert task.pk
