"""``manage.py send_digests``: counts and lists what it sends; --dry-run writes nothing."""

from __future__ import annotations

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
        "1 digest(s) with 2 item(s) for 1 tenant(s) queued",
    ]
    assert Digest.objects.count() == OutboundEmail.objects.count() == 1


@pytest.mark.django_db
def test_dry_run_lists_what_would_be_sent_and_writes_nothing(tenant, reader, waiting, digest_day):
    waiting(document_draft(reader()))
    out = run("--tenant", str(tenant.pk), "--as-of", digest_day.isoformat(), "--dry-run")
    assert out.splitlines()[-1] == "1 digest(s) with 1 item(s) for 1 tenant(s) would be queued; nothing was written"
    assert not Digest.objects.exists() and not OutboundEmail.objects.exists()
    assert Notification.objects.get().email_status == "digest_pending"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "no-such-firm"], "no active tenant with id or slug 'no-such-firm'"),
        (["--as-of", "2026-02-30"], "expected a date as YYYY-MM-DD, got '2026-02-30'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(args, message):
    result = manage("send_digests", *args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line
