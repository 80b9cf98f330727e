"""One tenant's daily digests: one per person and day, every waiting item in exactly one."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.digests import digest_cutoff, digests_send
from notifications.models import Digest, Notification, NotificationPreference, OutboundEmail, Suppression
from tests.factories import TenantFactory
from tests.notifications.digests.conftest import document_draft, filing_draft

pytestmark = pytest.mark.django_db


def send(tenant, day):
    return digests_send(tenant=tenant, as_of=day)


def test_each_reader_gets_one_digest_carrying_every_item_waiting(tenant, reader, waiting, digest_day):
    ana, ben = reader(), reader()
    waiting(document_draft(ana), filing_draft(ana), document_draft(ben))

    result = send(tenant, digest_day)

    assert sorted((d.recipient_id, d.items) for d in result.digests) == sorted([(ana.pk, 2), (ben.pk, 1)])
    digest = Digest.objects.get(recipient=ana)
    assert (digest.local_date, digest.items_count) == (digest_day, 2)
    assert set(Notification.objects.filter(recipient=ana).values_list("email_status", "digest_id")) == {
        ("digested", digest.pk)
    }


def test_the_digest_is_an_email_in_the_outbox(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana), filing_draft(ana))
    send(tenant, digest_day)
    email = OutboundEmail.objects.get()
    assert (email.template, email.to_email, email.status, email.notification_id) == (
        "daily-digest",
        ana.email,
        "queued",
        None,
    )
    assert email.subject == f"1 document expiring, 1 filing due: {tenant.name}"
    assert email.idempotency_key == f"digest:{Digest.objects.get().pk}"
    assert (email.priority, email.fair_key) == (2, 1)  # normal, first in its firm's line
    assert not ProcrastinateJob.objects.filter(task_name="notifications.send_email").exists()


def test_a_second_run_the_same_day_sends_nothing_more(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana))
    send(tenant, digest_day)
    waiting(document_draft(ana))  # a new item, after the first run
    assert send(tenant, digest_day).digests == []
    assert Digest.objects.count() == OutboundEmail.objects.count() == 1
    assert Notification.objects.filter(email_status="digest_pending").count() == 1  # tomorrow's


def test_items_created_after_the_cutoff_wait_for_the_next_day(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana), document_draft(ana))
    late = Notification.objects.order_by("pk").last()
    cutoff = digest_cutoff(tenant=tenant, day=digest_day, hour=9)
    Notification.objects.filter(pk=late.pk).update(created_at=cutoff + timedelta(minutes=1))

    assert [d.items for d in send(tenant, digest_day).digests] == [1]
    late.refresh_from_db()
    assert late.email_status == "digest_pending"
    assert [d.items for d in send(tenant, digest_day + timedelta(days=1)).digests] == [1]
    late.refresh_from_db()
    assert late.email_status == "digested"


def test_someone_with_nothing_waiting_gets_no_digest(tenant, reader, member_of, waiting, digest_day):
    reader()
    immediate = member_of(tenant, "admin")
    waiting(document_draft(immediate))  # emailed at once: nothing waits
    assert send(tenant, digest_day).digests == []
    assert not Digest.objects.exists()


def test_an_inactive_person_gets_no_digest_and_their_items_keep_waiting(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana))
    ana.is_active = False
    ana.save()
    assert send(tenant, digest_day).digests == []
    assert Notification.objects.get().email_status == "digest_pending"


def test_items_of_a_kind_turned_off_since_leave_the_queue(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana), filing_draft(ana))
    NotificationPreference.objects.filter(user=ana, kind="filing_reminder").update(email="off")
    result = send(tenant, digest_day)
    assert ([d.items for d in result.digests], result.opted_out) == ([1], 1)
    assert Notification.objects.get(kind="filing_reminder").email_status == "opted_out"


def test_items_of_an_address_suppressed_since_leave_the_queue(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana))
    Suppression.objects.create(email=ana.email, reason="bounced")
    result = send(tenant, digest_day)
    assert (result.digests, result.suppressed) == ([], 1)
    assert Notification.objects.get().email_status == "suppressed"


def test_another_tenants_items_stay_out(tenant, reader, waiting, digest_day):
    other = TenantFactory()
    ana = reader()
    reader(tenant=other)
    waiting(document_draft(ana))
    send(other, digest_day)
    assert not Digest.objects.exists()
    assert Notification.objects.get().email_status == "digest_pending"


def test_an_inactive_tenant_gets_nothing(tenant, reader, waiting, digest_day):
    waiting(document_draft(reader()))
    tenant.is_active = False
    tenant.save()
    assert send(tenant, digest_day).digests == []


def test_a_digested_item_must_name_its_digest(tenant, reader, waiting):
    waiting(document_draft(reader()))
    with pytest.raises(IntegrityError, match="notification_digested_in_one_digest"), transaction.atomic():
        Notification.objects.update(email_status="digested")


def test_an_item_cannot_be_put_in_another_tenants_digest(tenant, reader, waiting, digest_day):
    other = TenantFactory()
    waiting(document_draft(reader()))
    waiting(document_draft(reader(tenant=other)), tenant=other)
    send(other, digest_day)
    foreign = Digest.objects.get(tenant=other)
    with pytest.raises(IntegrityError, match="notification_digest_same_tenant_fk"), transaction.atomic():
        Notification.objects.filter(tenant=tenant).update(email_status="digested", digest=foreign)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_only_one_digest_per_person_and_day_in_the_database(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana))
    send(tenant, digest_day)
    digest = Digest.objects.get()
    with pytest.raises(IntegrityError, match="digest_one_per_person_per_day"), transaction.atomic():
        Digest.objects.create(tenant=tenant, recipient=ana, local_date=digest_day, cutoff=digest.cutoff)


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_send_one_digest_per_person(tenant, reader, waiting, digest_day):
    people = [reader() for _ in range(3)]
    waiting(*(draft(person) for person in people for draft in (document_draft, filing_draft)))
    barrier = threading.Barrier(2)
    results = []

    def run():
        barrier.wait(10)
        try:
            results.append(send(tenant, digest_day))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(len(result.digests) for result in results) == [0, 3]
    assert Digest.objects.count() == OutboundEmail.objects.count() == 3
    assert OutboundEmail.objects.filter(status="queued").count() == 3
    per_digest = Notification.objects.values_list("digest_id", flat=True)
    assert set(Notification.objects.values_list("email_status", flat=True)) == {"digested"}
    assert sorted(list(per_digest).count(d) for d in set(per_digest)) == [2, 2, 2]


@pytest.mark.django_db(transaction=True)
def test_runs_of_two_days_racing_put_each_item_in_exactly_one_digest(tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(*(document_draft(ana) for _ in range(20)))
    barrier = threading.Barrier(2)
    results = []

    def run(day):
        barrier.wait(10)
        try:
            results.append(send(tenant, day))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(day,)) for day in (digest_day, digest_day + timedelta(days=1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(result.items for result in results) == 20
    assert Digest.objects.count() == 1  # the other run found nothing left and sent no empty digest
    assert Notification.objects.filter(email_status="digested", digest__isnull=False).count() == 20


def test_a_tenant_goes_with_its_digests_and_their_items(tenant, reader, waiting, digest_day):
    waiting(document_draft(reader()))
    send(tenant, digest_day)
    tenant.delete()
    assert not Digest.objects.exists() and not Notification.objects.exists()
