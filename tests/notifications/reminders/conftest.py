"""Fixtures of the reminder tests: a tenant's staff in every role, and documents and filings by days left."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from compliance.models import Membership
from notifications.models import Notification
from tests.factories import ClientFactory, DocumentFactory, DocumentTypeFactory, FilingFactory
from tests.helpers import manage_popen

AS_OF = date(2026, 11, 29)
ROLES = ("admin", "manager", "compliance_officer", "tax_preparer", "viewer")


@pytest.fixture
def staff(tenant, member_of):
    """One active member per role of ``tenant``, keyed by role."""
    return {role: member_of(tenant, role) for role in ROLES}


@pytest.fixture
def client_of(db):
    def make(tenant, **fields):
        return ClientFactory(tenant=tenant, **fields)

    return make


@pytest.fixture
def document_expiring(db):
    """``document_expiring(tenant, days_left)``: a document of a new client expiring ``days_left`` after AS_OF."""

    def make(tenant, days_left, *, as_of=AS_OF, client=None, document_type=None, **fields):
        client = client or ClientFactory(tenant=tenant)
        return DocumentFactory(
            tenant=tenant,
            client=client,
            document_type=document_type or DocumentTypeFactory(code="tin-certificate", name="TIN Certificate"),
            expires_on=as_of + timedelta(days=days_left),
            **fields,
        )

    return make


@pytest.fixture
def filing_due(db):
    """``filing_due(tenant, days_left)``: a draft filing of a new client due ``days_left`` after AS_OF."""

    def make(tenant, days_left, *, as_of=AS_OF, client=None, **fields):
        client = client or ClientFactory(tenant=tenant)
        return FilingFactory(tenant=tenant, client=client, due_date=as_of + timedelta(days=days_left), **fields)

    return make


def thresholds_sent(kind: str = "") -> list[int]:
    """The thresholds of the notifications written so far (from their dedupe keys), sorted."""
    keys = Notification.objects.filter(kind__startswith=kind).values_list("dedupe_key", flat=True)
    return sorted(int(key.split(":")[2]) for key in keys)


def recipients_of(queryset) -> set[int]:
    return set(queryset.values_list("recipient_id", flat=True))


def roles_of(tenant, user_ids) -> set[str]:
    return set(Membership.objects.filter(tenant=tenant, user_id__in=user_ids).values_list("role", flat=True))


@pytest.fixture
def worker(transactional_db):
    """``worker("queue,...")`` starts ``manage.py runworkers`` on the test database; stopped at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(queues: str) -> subprocess.Popen[str]:
        process = manage_popen("runworkers", "--queues", queues, "--shutdown-timeout", "5")
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)  # drains the pipe, so a chatty worker never blocks on it
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


def wait_for(predicate: Callable[[], object], *, timeout: float, message: str) -> object:
    """Poll until ``predicate`` is truthy; the timeout only bounds a hung test, nothing asserts speed."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.2)
    return value
