from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import MembershipFactory, TenantFactory


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def member_of(db):
    """``member_of(tenant, role)`` creates a user with that role in that tenant."""

    def make(tenant, role="admin", **user_fields):
        return MembershipFactory(tenant=tenant, role=role, **({"user__" + k: v for k, v in user_fields.items()})).user

    return make


# procrastinate's models are unmanaged, so Django's flush after a transactional test
# leaves its tables alone: empty them here, or jobs and workers leak into the next test.
PROCRASTINATE_TABLES = "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"


@pytest.fixture(autouse=True)
def _procrastinate_tables_emptied_after_transactional_tests(request, django_db_blocker):
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (marker and marker.kwargs.get("transaction"))
    if transactional:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {PROCRASTINATE_TABLES}, kgc_jobcountdelta RESTART IDENTITY CASCADE")
