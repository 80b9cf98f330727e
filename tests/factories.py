"""Test data factories, in one place."""

from __future__ import annotations

from datetime import date

import factory
from django.contrib.auth import get_user_model

from compliance.models import (
    Client,
    Document,
    DocumentType,
    Filing,
    FilingTask,
    Membership,
    Requirement,
    Tenant,
)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Firm {n}")
    slug = factory.Sequence(lambda n: f"firm-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = "Pat"
    last_name = factory.Sequence(lambda n: f"Person{n}")
    password = "!unusable"  # noqa: S105


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ADMIN


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Client {n}")


class DocumentTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DocumentType
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"doc-type-{n}")
    name = factory.LazyAttribute(lambda o: o.code.replace("-", " ").title())


class RequirementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Requirement

    client = factory.SubFactory(ClientFactory)
    document_type = factory.SubFactory(DocumentTypeFactory)


class DocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Document

    client = factory.SubFactory(ClientFactory)
    tenant = factory.LazyAttribute(lambda o: o.client.tenant)
    document_type = factory.SubFactory(DocumentTypeFactory)
    title = factory.LazyAttribute(lambda o: f"{o.document_type.name} of {o.client.name}")
    expires_on = None


class FilingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Filing

    client = factory.SubFactory(ClientFactory)
    tenant = factory.LazyAttribute(lambda o: o.client.tenant)
    filing_type = "VAT Return"
    period = "2026-10"
    due_date = date(2026, 11, 30)
    status = Filing.Status.DRAFT


class FilingTaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FilingTask

    filing = factory.SubFactory(FilingFactory)
    assignee = factory.SubFactory(UserFactory)
    title = "Prepare the return"
