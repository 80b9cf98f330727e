"""Fixtures shared by the notifications tests: people who read digests, and items waiting for them.

Items are made the way the morning runs make them (``notifications_deliver``), so they
start ``digest_pending`` through the preference rules. The day of the digest is the
tenant's tomorrow: its cut-off (the digest hour that day) is after every item made now.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from compliance.selectors import tenant_local_date
from notifications.models import NotificationPreference
from notifications.services import notifications_deliver


@pytest.fixture
def digest_day(tenant) -> date:
    """The tenant-local day whose digest the tests send (its cut-off is after every item made now)."""
    return tenant_local_date(tenant, timezone.now()) + timedelta(days=1)


@pytest.fixture
def reader(tenant, member_of):
    """``reader(**user_fields)``: a member of ``tenant`` who chose the daily digest for every kind."""

    def make(tenant=tenant, **fields):
        user = member_of(tenant, "manager", **fields)
        for kind in ("document_expiry", "filing_reminder", "compliance_alert"):
            NotificationPreference.objects.create(tenant=tenant, user=user, kind=kind, email="daily_digest")
        return user

    return make


@pytest.fixture
def waiting(tenant):
    """``waiting(*drafts)``: deliver the drafts (they wait for the digest of a digest reader)."""

    def deliver(*drafts, tenant=tenant):
        return notifications_deliver(tenant=tenant, drafts=list(drafts))

    return deliver
