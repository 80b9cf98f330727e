"""``manage.py send_digests``: counts and lists what it sends; --dry-run writes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from notifications.models import Digest, Notification, OutboundEmail
from tests.helpers import manage
from tests.notifications.digests.conftest import document_draft, filing_draft


def run(*args: str) -> str:
    out = StringIO()
    call_command("send_digests", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_run_lists_each_digest_and_counts_them(tenant, reader, waiting, digest_day):
    ana = reader(first_name="Ana", last_name="Otieno", email="ana@firm.example")
    waiting(document_draft(ana), filing_draft(ana))
    out = run("--tenant", tenant.slug, "--as-of", digest_day.isoformat()).splitlines()
    assert out == [
        f"{tenant.slug} {digest_day}: Ana Otieno <ana@firm.example> ← 1 document expiring, 1 filing due: {tenant.name}",
        "1 digest with 2 items for 1 tenant queued",
    ]
    assert Digest.objects.count() == OutboundEmail.objects.count() == 1


@pytest.mark.django_db
def test_dry_run_lists_what_would_be_sent_and_writes_nothing(tenant, reader, waiting, digest_day):
    waiting(document_draft(reader()))
    out = run("--tenant", str(tenant.pk), "--as-of", digest_day.isoformat(), "--dry-run")
    assert out.splitlines()[-1] == "1 digest with 1 item for 1 tenant would be queued; nothing was written"
    assert not Digest.objects.exists() and not OutboundEmail.objects.exists()
    assert Notification.objects.get().email_status == "digest_pending"


@pytest.mark.django_db
def test_a_run_that_sends_nothing_says_which_items_wait_for_a_later_day(tenant, reader, waiting, digest_day):
    waiting(document_draft(reader()), filing_draft(reader()))
    # Two days before: the items were made after that day's digest hour, so they are not for it.
    out = run("--tenant", tenant.slug, "--as-of", (digest_day - timedelta(days=3)).isoformat()).splitlines()
    assert out == [
        "0 digests with 0 items for 1 tenant queued",
        "2 items wait for a later day's digest: made after that day's digest hour (09:00 in each tenant's time)",
    ]
    assert Notification.objects.filter(email_status="digest_pending").count() == 2


@pytest.mark.django_db
def test_a_run_says_which_items_wait_for_members_who_get_no_digest(tenant, reader, waiting, digest_day):
    gone = reader()
    waiting(document_draft(gone))
    gone.is_active = False
    gone.save()
    out = run("--tenant", tenant.slug, "--as-of", digest_day.isoformat()).splitlines()
    assert out[-1] == (
        "1 item of members who get no digest (inactive, or without an email address) waits: it expires after 7 days"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "no-such-firm"], "no tenant with slug 'no-such-firm'"),
        (["--as-of", "2026-02-30"], "expected a date as YYYY-MM-DD, got '2026-02-30'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(args, message):
    result = manage("send_digests", *args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line
