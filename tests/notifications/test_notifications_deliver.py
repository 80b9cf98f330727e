"""Each notification, and its email, is created once and only once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.models import Notification, NotificationPreference, OutboundEmail, Suppression
from notifications.services import NotificationDraft, notifications_deliver
from tests.factories import MembershipFactory, TenantFactory


def draft(user, key="expiry:doc-1:30", **fields) -> NotificationDraft:
    values = {
        "recipient_id": user.pk,
        "recipient_email": user.email,
        "recipient_name": user.get_full_name(),
        "kind": "document_expiry",
        "title": "TIN Certificate of ACME expires in 30 days",
        "body": "...",
        "dedupe_key": key,
        "email_template": "document-expiry",
        "email_subject": "Document expiring",
        "data": {"documentId": 1},
        **fields,
    }
    return NotificationDraft(**values)


@pytest.mark.django_db
def test_creates_the_notification_and_its_email_in_the_outbox_together(tenant, member_of):
    user = member_of(tenant, "admin")
    result = notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert (result.notifications, result.emails, result.duplicates) == (1, 1, 0)
    email = OutboundEmail.objects.get()
    notification = Notification.objects.get()
    assert email.notification == notification
    assert email.idempotency_key == f"notification:{notification.pk}"
    assert notification.email_status == "queued"
    assert (email.status, email.priority, email.fair_key) == ("queued", 2, 1)  # first in its firm's line
    assert not ProcrastinateJob.objects.exists()  # the email is its own unit of work: no job per email


@pytest.mark.django_db
def test_second_delivery_of_the_same_key_adds_nothing(tenant, member_of):
    user = member_of(tenant, "admin")
    notifications_deliver(tenant=tenant, drafts=[draft(user)])
    result = notifications_deliver(tenant=tenant, drafts=[draft(user), draft(user, key="expiry:doc-2:30")])
    assert (result.notifications, result.duplicates) == (1, 1)
    assert Notification.objects.count() == OutboundEmail.objects.count() == 2
    assert OutboundEmail.objects.filter(status="queued").count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliveries_create_one_notification(tenant, member_of):
    user = member_of(tenant, "admin")
    barrier = threading.Barrier(2)
    results = []

    def deliver():
        barrier.wait()
        try:
            results.append(notifications_deliver(tenant=tenant, drafts=[draft(user)]))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.notifications for r in results) == [0, 1]
    assert Notification.objects.count() == OutboundEmail.objects.count() == 1
    assert OutboundEmail.objects.filter(status="queued").count() == 1


@pytest.mark.django_db
def test_recipient_without_an_address_gets_the_notification_but_no_email(tenant, member_of):
    user = member_of(tenant, "admin", email="")
    result = notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert (result.notifications, result.emails) == (1, 0)
    assert Notification.objects.get().email_status == "skipped"
    assert not OutboundEmail.objects.exists()
    assert not OutboundEmail.objects.filter(status="queued").exists()


@pytest.mark.django_db
def test_a_draft_the_database_refuses_is_skipped_and_the_others_are_delivered(tenant, member_of):
    user = member_of(tenant, "admin")
    drafts = [draft(user, key="a"), draft(user, key="b", title="Broken\x00title"), draft(user, key="c")]
    result = notifications_deliver(tenant=tenant, drafts=drafts)
    assert (result.notifications, result.emails) == (2, 2)
    assert [skipped.dedupe_key for skipped in result.skipped] == ["b"]
    assert result.skipped[0].reason == "unsupported Unicode escape sequence: \\u0000 cannot be converted to text."
    assert sorted(Notification.objects.values_list("dedupe_key", flat=True)) == ["a", "c"]
    assert OutboundEmail.objects.filter(status="queued").count() == 2


@pytest.mark.django_db
def test_long_generated_texts_are_fitted_to_their_columns(tenant, member_of):
    user = member_of(tenant, "admin")
    long = draft(user, title="T" * 400, email_subject="S" * 400, recipient_name="R" * 301)
    notifications_deliver(tenant=tenant, drafts=[long])
    email = OutboundEmail.objects.get()
    assert len(Notification.objects.get().title) == len(email.subject) == 300
    assert len(email.to_name) == 200


@pytest.mark.django_db
@pytest.mark.parametrize("separator", ["\r\n", "\n", "\u2028", "\x85"])
def test_line_separators_in_names_become_spaces_in_the_email_headers(tenant, member_of, separator):
    user = member_of(tenant, "admin")
    notifications_deliver(
        tenant=tenant, drafts=[draft(user, email_subject=f"ACME{separator}Corp", recipient_name=f"Pat{separator}P")]
    )
    email = OutboundEmail.objects.get()
    assert (email.subject, email.to_name) == ("ACME Corp", "Pat P")


# --- Preferences, the tenant's default, suppressions ----------------------------------------


def _choose(tenant, user, kind="document_expiry", email="immediate"):
    NotificationPreference.objects.create(tenant=tenant, user=user, kind=kind, email=email)


def _send_jobs() -> int:
    return OutboundEmail.objects.filter(status="queued").count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("choice", "email_status", "emails"),
    [("immediate", "queued", 1), ("daily_digest", "digest_pending", 0), ("off", "opted_out", 0)],
)
def test_each_choice_decides_whether_and_when_the_email_goes(tenant, member_of, choice, email_status, emails):
    user = member_of(tenant, "admin")
    _choose(tenant, user, email=choice)
    result = notifications_deliver(tenant=tenant, drafts=[draft(user, urgency="NORMAL")])
    assert result.notifications == 1  # in-app, whatever the choice
    assert Notification.objects.get().email_status == email_status
    assert (OutboundEmail.objects.count(), _send_jobs(), result.emails) == (emails, emails, emails)


@pytest.mark.django_db
def test_result_counts_the_notifications_by_where_their_email_went(tenant, member_of):
    digest_reader, opted_out = member_of(tenant, "admin"), member_of(tenant, "manager")
    _choose(tenant, digest_reader, email="daily_digest")
    _choose(tenant, opted_out, email="off")
    result = notifications_deliver(tenant=tenant, drafts=[draft(digest_reader, key="a"), draft(opted_out, key="b")])
    assert (result.emails, result.digest_pending, result.opted_out, result.suppressed) == (0, 1, 1, 0)


@pytest.mark.django_db
def test_without_a_choice_the_tenant_default_applies(tenant, member_of):
    tenant.notification_email_default = "daily_digest"
    tenant.save()
    user = member_of(tenant, "admin")
    notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert Notification.objects.get().email_status == "digest_pending"
    assert not OutboundEmail.objects.exists()


@pytest.mark.django_db
def test_a_choice_for_one_kind_leaves_the_others_to_the_default(tenant, member_of):
    user = member_of(tenant, "admin")
    _choose(tenant, user, kind="filing_reminder", email="off")
    notifications_deliver(tenant=tenant, drafts=[draft(user)])  # a document_expiry
    assert Notification.objects.get().email_status == "queued"


@pytest.mark.django_db
def test_a_choice_in_another_tenant_does_not_apply(tenant, member_of):
    user = member_of(tenant, "admin")
    other = TenantFactory()
    MembershipFactory(tenant=other, user=user)
    _choose(other, user, email="off")
    notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert Notification.objects.get().email_status == "queued"


@pytest.mark.django_db
def test_an_urgent_notification_is_emailed_at_once_to_a_digest_reader(tenant, member_of):
    user = member_of(tenant, "admin")
    _choose(tenant, user, email="daily_digest")
    notifications_deliver(tenant=tenant, drafts=[draft(user, urgency="URGENT")])
    assert Notification.objects.get().email_status == "queued"
    assert _send_jobs() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("for_this_tenant", [True, False])
def test_a_suppressed_address_gets_the_notification_but_no_email(tenant, member_of, for_this_tenant):
    user = member_of(tenant, "admin", email="Pat.Person@Example.com")
    Suppression.objects.create(
        email="pat.person@example.com", reason="bounced", tenant=tenant if for_this_tenant else None
    )
    result = notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert (result.notifications, result.emails, result.suppressed) == (1, 0, 1)
    assert Notification.objects.get().email_status == "suppressed"
    assert not OutboundEmail.objects.exists()


@pytest.mark.django_db
def test_another_tenants_suppression_does_not_apply(tenant, member_of):
    user = member_of(tenant, "admin")
    Suppression.objects.create(email=user.email, reason="complained", tenant=TenantFactory())
    notifications_deliver(tenant=tenant, drafts=[draft(user)])
    assert Notification.objects.get().email_status == "queued"


def _queries_to_deliver(tenant, users, count: int) -> int:
    drafts = [draft(users[n % len(users)], key=f"q:{count}:{n}") for n in range(count)]
    with CaptureQueriesContext(connection) as queries:
        notifications_deliver(tenant=tenant, drafts=drafts)
    return len(queries)


@pytest.mark.django_db
def test_preferences_and_suppressions_cost_the_same_queries_for_2_or_60_notifications(tenant, member_of):
    users = [member_of(tenant, "admin") for _ in range(6)]
    for user in users[:3]:
        _choose(tenant, user, email="daily_digest")
    Suppression.objects.create(email=users[5].email, reason="bounced")
    assert _queries_to_deliver(tenant, users, 2) == _queries_to_deliver(tenant, users, 60)
