"""The compliance screens of the admin: latest scores, breakdowns, charts, filters, big-table paging."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compliance import admin as compliance_admin
from compliance.models import Tenant
from compliance.services import refresh_tenant_compliance
from tests.factories import ClientFactory, DocumentFactory, FilingFactory, TenantFactory

pytestmark = [
    pytest.mark.django_db,
    # WhiteNoise warns when collectstatic has not run (a fresh checkout); the admin works without it.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def changelist(model: str) -> str:
    return reverse(f"admin:compliance_{model}_changelist")


@pytest.fixture
def scored_client(tenant, make_client, past_score, as_of):
    client = make_client(tenant, "amber")
    past_score(client, "green", days_ago=1)
    refresh_tenant_compliance(tenant=tenant, as_of=as_of, triggered_by="test")
    return client


def test_client_list_shows_the_latest_score_and_level(admin_client, scored_client):
    response = admin_client.get(changelist("client"))
    row = next(c for c in response.context["cl"].result_list if c.pk == scored_client.pk)
    assert (row.latest_score_value, row.latest_level_value) == (75, "amber")
    assert ">Amber</span>" in response.text


def test_client_list_query_count_does_not_grow_with_its_rows(admin_client, make_client, past_score):
    def queries_for(rows: int) -> int:
        tenant = TenantFactory()
        for _ in range(rows):
            past_score(make_client(tenant), "green")
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(changelist("client"), {"tenant__id__exact": tenant.pk}).status_code == 200
        return len(queries)

    assert queries_for(3) == queries_for(30)


def test_client_page_shows_the_breakdown_and_the_score_chart(admin_client, scored_client, as_of):
    response = admin_client.get(reverse("admin:compliance_client_change", args=[scored_client.pk]))
    assert response.status_code == 200
    assert "Missing TIN Certificate" in response.text
    assert 'class="compliance-score-chart"' in response.text
    assert f"<title>{as_of - timedelta(days=1)}: 100</title>" in response.text
    assert f"<title>{as_of}: 75</title>" in response.text


def test_score_chart_places_higher_scores_higher(as_of):
    context = compliance_admin.score_chart_context(
        [(as_of - timedelta(days=1), 100, "green"), (as_of, 40, "red")], compliance_admin.conf.DEFAULT_POLICY
    )
    first, last = context["dots"]
    assert first["y"] < last["y"]
    assert first["x"] < last["x"]


def test_document_expiring_soon_filter(admin_client, tenant):
    today = timezone.localdate()
    client = ClientFactory(tenant=tenant)
    expected = {
        DocumentFactory(client=client, expires_on=today).pk,
        DocumentFactory(client=client, expires_on=today + timedelta(days=30)).pk,
    }
    for expires_on in (today - timedelta(days=1), today + timedelta(days=31), None):
        DocumentFactory(client=client, expires_on=expires_on)
    response = admin_client.get(changelist("document"), {"expiry": "30"})
    assert {d.pk for d in response.context["cl"].result_list} == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("7", {"due-in-3-draft", "due-in-7-prepared"}), ("overdue", {"overdue-draft", "overdue-rejected"})],
)
def test_filing_due_soon_filter(admin_client, tenant, choice, expected):
    today = timezone.localdate()
    client = ClientFactory(tenant=tenant)
    for period, days, status in [
        ("due-in-3-draft", 3, "draft"),
        ("due-in-7-prepared", 7, "prepared"),
        ("due-in-3-submitted", 3, "submitted"),
        ("due-in-8-draft", 8, "draft"),
        ("overdue-draft", -1, "draft"),
        ("overdue-rejected", -9, "rejected"),
        ("overdue-accepted", -1, "accepted"),
    ]:
        FilingFactory(client=client, period=period, due_date=today + timedelta(days=days), status=status)
    response = admin_client.get(changelist("filing"), {"due": choice})
    assert {f.period for f in response.context["cl"].result_list} == expected


def test_list_count_stops_at_the_cap(monkeypatch):
    monkeypatch.setattr(compliance_admin, "COUNT_CAP", 3)
    TenantFactory.create_batch(5)
    paginator = compliance_admin.CappedCountPaginator(Tenant.objects.all(), 2)
    assert (int(paginator.count), str(paginator.count), paginator.num_pages) == (3, "3+", 2)


def test_list_count_below_the_cap_is_exact():
    TenantFactory.create_batch(5)
    paginator = compliance_admin.CappedCountPaginator(Tenant.objects.all(), 2)
    assert (paginator.count, str(paginator.count)) == (5, "5")


@pytest.mark.parametrize(
    "model", ["tenant", "client", "document", "filing", "filingtask", "documenttype", "requirement", "compliancescore"]
)
def test_every_compliance_list_renders(admin_client, scored_client, model):
    assert admin_client.get(changelist(model)).status_code == 200


def test_tenant_page_lists_its_members(admin_client, tenant, member_of):
    member = member_of(tenant, "compliance_officer")
    response = admin_client.get(reverse("admin:compliance_tenant_change", args=[tenant.pk]))
    assert member.username in response.text


def test_scores_are_read_only(admin_client, scored_client):
    score = scored_client.scores.get(calculated_on="2026-11-29")
    assert admin_client.get(reverse("admin:compliance_compliancescore_add")).status_code == 403
    response = admin_client.get(reverse("admin:compliance_compliancescore_change", args=[score.pk]))
    assert "Missing TIN Certificate" in response.text
    assert 'name="score"' not in response.text


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(changelist("client"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_list_past_the_cap_says_so(admin_client, monkeypatch):
    monkeypatch.setattr(compliance_admin, "COUNT_CAP", 3)
    TenantFactory.create_batch(5)
    response = admin_client.get(changelist("tenant"))
    assert "3+ tenants" in response.text


# --- Manual triggers --------------------------------------------------------------------------


def _act(client, model: str, action: str, ids: list[int], **extra: str):
    data = {"action": action, "_selected_action": ids, "index": 0, **extra}
    return client.post(changelist(model), data, follow=bool(extra))


@pytest.mark.parametrize(
    ("action", "task"),
    [
        ("refresh_compliance_now", "compliance.refresh_tenant"),
        ("check_expiries_now", "notifications.check_expiry"),
        ("send_filing_reminders_now", "notifications.send_filing_reminders"),
    ],
)
def test_a_tenant_trigger_asks_for_confirmation_first(admin_client, action, task):
    from procrastinate.contrib.django.models import ProcrastinateJob

    tenant = TenantFactory(name="Acme Tax")
    response = _act(admin_client, "tenant", action, [tenant.pk])
    assert "Acme Tax" in response.content.decode() and 'id="confirm-button"' in response.content.decode()
    assert not ProcrastinateJob.objects.filter(task_name=task).exists()


@pytest.mark.parametrize(
    ("action", "task"),
    [
        ("refresh_compliance_now", "compliance.refresh_tenant"),
        ("check_expiries_now", "notifications.check_expiry"),
        ("send_filing_reminders_now", "notifications.send_filing_reminders"),
    ],
)
def test_a_tenant_trigger_defers_one_job_per_tenant_and_links_to_them(admin_client, action, task):
    from procrastinate.contrib.django.models import ProcrastinateJob

    tenants = [TenantFactory(), TenantFactory()]
    response = _act(admin_client, "tenant", action, [t.pk for t in tenants], confirm="yes")
    jobs = list(ProcrastinateJob.objects.filter(task_name=task).order_by("id"))
    assert sorted(job.args["tenant_id"] for job in jobs) == sorted(t.pk for t in tenants)
    [message] = [str(m) for m in response.context["messages"]]
    link = reverse("admin:procrastinate_procrastinatejob_changelist") + "?id__in=" + ",".join(str(j.pk) for j in jobs)
    assert f'<a href="{link}">See the jobs</a>' in message
    assert "for 2 tenants" in message


def test_a_manual_refresh_runs_before_the_nightly_jobs(admin_client):
    from procrastinate.contrib.django.models import ProcrastinateJob

    tenant = TenantFactory()
    _act(admin_client, "tenant", "refresh_compliance_now", [tenant.pk], confirm="yes")
    job = ProcrastinateJob.objects.get(task_name="compliance.refresh_tenant")
    assert (job.priority, job.args["triggered_by"]) == (-1, "admin:admin")


def test_a_refresh_already_waiting_is_reported_not_doubled(admin_client):
    from procrastinate.contrib.django.models import ProcrastinateJob

    tenant = TenantFactory()
    _act(admin_client, "tenant", "refresh_compliance_now", [tenant.pk], confirm="yes")
    response = _act(admin_client, "tenant", "refresh_compliance_now", [tenant.pk], confirm="yes")
    assert ProcrastinateJob.objects.filter(task_name="compliance.refresh_tenant").count() == 1
    assert "1 tenant had one waiting already" in str(list(response.context["messages"])[0])


def test_an_inactive_tenant_is_skipped_and_the_others_still_go(admin_client):
    from procrastinate.contrib.django.models import ProcrastinateJob

    active, inactive = TenantFactory(), TenantFactory(is_active=False, slug="closed-firm")
    response = _act(admin_client, "tenant", "check_expiries_now", [active.pk, inactive.pk], confirm="yes")
    assert [job.args["tenant_id"] for job in ProcrastinateJob.objects.all()] == [active.pk]
    messages = [str(m) for m in response.context["messages"]]
    skipped = f"Check expiries now: tenant closed-firm skipped: tenant {inactive.pk} is inactive"
    assert any(m.startswith(skipped) for m in messages)


def test_refresh_on_clients_refreshes_their_tenants_once_each(admin_client):
    from procrastinate.contrib.django.models import ProcrastinateJob

    first, second = TenantFactory(), TenantFactory()
    clients = [ClientFactory(tenant=first), ClientFactory(tenant=first), ClientFactory(tenant=second)]
    _act(admin_client, "client", "refresh_compliance_now", [c.pk for c in clients], confirm="yes")
    assert sorted(job.args["tenant_id"] for job in ProcrastinateJob.objects.all()) == sorted([first.pk, second.pk])


def test_triggers_are_logged_with_the_user(admin_client):
    from django.contrib.admin.models import LogEntry

    tenant = TenantFactory()
    _act(admin_client, "tenant", "send_filing_reminders_now", [tenant.pk], confirm="yes")
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user.username) == (str(tenant.pk), "admin")
    assert entry.change_message.startswith("Send filing reminders now (jobs ")


def test_staff_without_the_queue_permission_get_no_triggers(client):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_tenant", "change_tenant"]))
    client.force_login(user)
    form = client.get(changelist("tenant")).context["action_form"]
    assert form is None or "refresh_compliance_now" not in {name for name, _ in form.fields["action"].choices}


# --- Lists fit 1280 px --------------------------------------------------------------------------


def test_long_names_are_cut_with_the_whole_name_on_hover(admin_client):
    long_name = "Kilimanjaro Consolidated Holdings and Subsidiaries International Limited"
    ClientFactory(name=long_name)
    page = admin_client.get(changelist("client")).content.decode()
    assert f'<span class="kgc-truncate" title="{long_name}">Kilimanjaro Consolidated Holdings and S…</span>' in page


def test_dates_in_lists_are_short_and_never_wrap(admin_client):
    from datetime import date

    FilingFactory(due_date=date(2026, 6, 8))
    page = admin_client.get(changelist("filing")).content.decode()
    assert '<span class="kgc-nowrap">2026-06-08</span>' in page


@pytest.mark.parametrize("model", ["client", "document", "filing", "compliancescore"])
@pytest.mark.parametrize("by", ["slug", "pk"])
def test_domain_lists_filter_by_a_tenant_typed_by_id_or_slug(admin_client, model, by):
    ours, theirs = TenantFactory(slug="kestrel-tax"), TenantFactory(slug="granite-audit")
    for tenant in (ours, theirs):
        client = ClientFactory(tenant=tenant)
        DocumentFactory(client=client)
        FilingFactory(client=client)
        refresh_tenant_compliance(tenant=tenant, as_of=timezone.localdate(), triggered_by="test")
    response = admin_client.get(changelist(model), {"tenant": getattr(ours, by)})
    rows = list(response.context["cl"].result_list)
    assert rows and {row.tenant_id for row in rows} == {ours.pk}
    assert 'placeholder="id or slug"' in response.text


def test_a_tenant_filter_naming_no_tenant_says_so_and_lists_nothing(admin_client):
    ClientFactory()
    response = admin_client.get(changelist("client"), {"tenant": "no-such-firm"})
    assert list(response.context["cl"].result_list) == []
    assert "No tenant with id or slug &#x27;no-such-firm&#x27;." in response.text
