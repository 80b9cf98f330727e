"""manage.py refresh_compliance: queue by default, score in the command with --sync."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from procrastinate.contrib.django.models import ProcrastinateJob

from compliance.models import ComplianceScore
from tests.factories import TenantFactory
from tests.helpers import manage

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("refresh_compliance", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_sync_scores_every_active_tenant_and_prints_the_summary(make_client):
    first, second = TenantFactory(), TenantFactory()
    make_client(first, "green")
    make_client(first, "amber")
    make_client(second, "red")
    make_client(TenantFactory(is_active=False))
    output = run("--sync", "--as-of", "2026-11-29")
    assert output.strip() == (
        "Scored 3 clients of 2 tenants for 2026-11-29: green 1, amber 1, red 1; 0 level drops, 0 alerts raised"
    )
    assert ComplianceScore.objects.filter(calculated_on="2026-11-29").count() == 3


def test_sync_with_a_tenant_slug_scores_only_that_tenant(make_client):
    chosen, other = TenantFactory(slug="chosen"), TenantFactory()
    make_client(chosen)
    make_client(other)
    run("--sync", "--tenant", "chosen", "--as-of", "2026-11-29")
    assert list(ComplianceScore.objects.values_list("tenant_id", flat=True)) == [chosen.pk]


def test_sync_counts_the_alerts_raised(tenant, make_client, past_score, member_of):
    member_of(tenant, "admin")
    past_score(make_client(tenant, "red"), "green")
    assert "1 level drop, 1 alert raised" in run("--sync", "--tenant", str(tenant.pk), "--as-of", "2026-11-29")


def test_default_queues_the_fan_out_of_every_tenant():
    output = run()
    job = ProcrastinateJob.objects.get()
    assert (job.task_name, job.args["triggered_by"]) == ("compliance.refresh_all", "command")
    assert output.strip() == f"Queued the compliance refresh of every active tenant: job {job.pk}"


def test_tenant_queues_one_refresh_job(tenant):
    run("--tenant", tenant.slug)
    job = ProcrastinateJob.objects.get()
    assert (job.task_name, job.queue_name, job.args) == (
        "compliance.refresh_tenant",
        "compliance",
        {"tenant_id": tenant.pk, "triggered_by": "command"},
    )


def test_tenant_refresh_already_waiting_is_reported_with_its_job_id(tenant):
    first = run("--tenant", tenant.slug)
    second = run("--tenant", tenant.slug)
    job = ProcrastinateJob.objects.get()
    assert first.strip() == f"Queued the compliance refresh of tenant {tenant.slug}: job {job.pk}"
    assert second.strip() == (
        f"A compliance refresh of tenant {tenant.slug} was already waiting: job {job.pk}; nothing queued"
    )


def test_as_of_queues_one_job_per_active_tenant_for_that_day():
    tenants = [TenantFactory(), TenantFactory()]
    TenantFactory(is_active=False)
    run("--as-of", "2026-11-20")
    jobs = ProcrastinateJob.objects.filter(task_name="compliance.refresh_tenant").order_by("id")
    assert [job.args for job in jobs] == [
        {"tenant_id": t.pk, "triggered_by": "command", "as_of": "2026-11-20"} for t in tenants
    ]


def test_unknown_tenant_is_one_line_and_exit_code_2():
    result = manage("refresh_compliance", "--tenant", "no-such-firm")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["CommandError: no tenant with slug 'no-such-firm'"]


def test_bad_date_exits_with_code_2():
    result = manage("refresh_compliance", "--as-of", "2026-13-01")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("expected a date as YYYY-MM-DD, got '2026-13-01'")
