"""The admin: failed emails visible with their error, resent after a confirmation, logged."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.models import EmailEvent, Notification, OutboundEmail

pytestmark = [
    pytest.mark.django_db,
    # WhiteNoise warns when collectstatic has not run (a test checkout); the admin works without it.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

CHANGELIST = "admin:notifications_outboundemail_changelist"


@pytest.fixture
def failed_email(notified_email):
    email = notified_email()
    OutboundEmail.objects.filter(pk=email.pk).update(status="failed", last_error="SMTP 550 5.1.1 no such user")
    Notification.objects.filter(pk=email.notification_id).update(email_status="failed")
    ProcrastinateJob.objects.all().delete()  # the original send job has run
    return email


def resend(admin_client, *emails, confirm: bool):
    data = {"action": "resend_failed", "_selected_action": [e.pk for e in emails]}
    if confirm:
        data["confirm"] = "yes"
    return admin_client.post(reverse(CHANGELIST), data, follow=confirm)


def test_failed_filter_lists_failed_emails_with_their_error(admin_client, failed_email, make_email):
    make_email(subject="A queued one")
    response = admin_client.get(reverse(CHANGELIST), {"status__exact": "failed"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "SMTP 550 5.1.1 no such user" in page
    assert "A queued one" not in page


def test_email_page_shows_readable_context(admin_client, failed_email):
    response = admin_client.get(reverse("admin:notifications_outboundemail_change", args=[failed_email.pk]))
    assert response.status_code == 200
    assert "&quot;documentTitle&quot;: &quot;TIN Certificate&quot;" in response.content.decode()


def test_notification_list_filters_by_email_status(admin_client, failed_email):
    url = reverse("admin:notifications_notification_changelist")
    response = admin_client.get(url, {"email_status__exact": "failed"})
    assert response.status_code == 200
    assert "TIN Certificate of ACME Corp" in response.content.decode()


def test_resend_asks_for_confirmation_first(admin_client, failed_email):
    response = resend(admin_client, failed_email, confirm=False)
    assert response.status_code == 200
    assert "Yes, resend" in response.content.decode()
    failed_email.refresh_from_db()
    assert failed_email.status == "failed"
    assert not ProcrastinateJob.objects.exists()


def test_confirmed_resend_puts_the_email_back_in_line(admin_client, failed_email):
    resend(admin_client, failed_email, confirm=True)
    failed_email.refresh_from_db()
    assert (failed_email.status, failed_email.attempts, failed_email.last_error) == ("queued", 0, "")
    assert Notification.objects.get(pk=failed_email.notification_id).email_status == "queued"
    assert not ProcrastinateJob.objects.exists()  # the outbox sends it: no job


def test_confirmed_resend_says_what_it_did_and_logs_it(admin_client, failed_email):
    response = resend(admin_client, failed_email, confirm=True)
    assert "Queued 1 failed email again" in response.content.decode()
    entry = LogEntry.objects.get(object_id=str(failed_email.pk))
    assert entry.change_message.startswith("Resent")


def test_resend_leaves_bounced_and_unfailed_emails_alone(admin_client, failed_email, make_email):
    EmailEvent.objects.create(
        tenant_id=failed_email.tenant_id,
        outbound_email=failed_email,
        event_type="bounced",
        event_key="Postmark:1",
        provider="Postmark",
    )
    sent = make_email(status="sent")
    response = resend(admin_client, failed_email, sent, confirm=True)
    assert "Nothing resent" in response.content.decode()
    assert not ProcrastinateJob.objects.exists()
    failed_email.refresh_from_db()
    assert failed_email.status == "failed"


def test_email_list_query_count_does_not_grow_with_rows(admin_client, make_email, django_assert_max_num_queries):
    for n in range(30):
        make_email(subject=f"Email {n}")
    with django_assert_max_num_queries(12):
        admin_client.get(reverse(CHANGELIST))


def test_bulk_resend_leaves_out_an_email_whose_delivery_is_unknown(admin_client, failed_send_job):
    _, unknown = failed_send_job(delivery_unknown=True)
    _, other = failed_send_job(delivery_unknown=False)
    confirmation = resend(admin_client, unknown, other, confirm=False).content.decode()
    assert "1 email whose delivery is unknown is left out" in confirmation
    resend(admin_client, unknown, other, confirm=True)
    unknown.refresh_from_db()
    other.refresh_from_db()
    assert (unknown.status, other.status) == ("failed", "queued")


def test_resend_of_one_email_whose_delivery_is_unknown_warns_then_sends_it_again(admin_client, failed_send_job):
    _, email = failed_send_job(delivery_unknown=True)
    url = reverse("admin:notifications_outboundemail_resend", args=[email.pk])
    page = admin_client.get(url).content.decode()
    assert "may already have reached" in page
    email.refresh_from_db()
    assert email.status == "failed"
    admin_client.post(url)
    email.refresh_from_db()
    assert (email.status, email.delivery_unknown) == ("queued", False)


def test_failed_email_page_links_to_its_resend(admin_client, failed_send_job):
    _, email = failed_send_job(delivery_unknown=True)
    page = admin_client.get(reverse("admin:notifications_outboundemail_change", args=[email.pk])).content.decode()
    assert reverse("admin:notifications_outboundemail_resend", args=[email.pk]) in page
