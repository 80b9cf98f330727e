"""The enqueue routes: each defers the same job as kgc/job_helpers.py and answers {id, queue, name}."""

from __future__ import annotations

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.models import OutboundEmail
from tests.factories import TenantFactory

EMAIL = {
    "recipientEmail": "user@example.com",
    "recipientName": "John Doe",
    "subject": "Compliance Alert",
    "template": "compliance-alert",
    "data": {
        "clientName": "ACME Corp",
        "complianceScore": 65,
        "complianceLevel": "amber",
        "issues": ["Missing TIN Certificate", "VAT Filing Overdue"],
        "recommendations": ["Upload TIN Certificate", "Submit VAT Filing"],
    },
}


def test_compliance_refresh_for_a_tenant_answers_201_with_the_job(api, tenant):
    response = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, "triggeredBy": "manual", "priority": 1})
    assert response.status_code == 201
    job = ProcrastinateJob.objects.get()
    assert response.json() == {"id": job.id, "queue": "compliance", "name": "compliance.refresh_tenant"}
    assert job.args == {"tenant_id": tenant.pk, "triggered_by": "manual"}
    assert job.priority == -1


def test_compliance_refresh_already_waiting_answers_200_with_the_same_job(api, tenant):
    first = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk})
    second = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, "priority": 1})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert ProcrastinateJob.objects.get().priority == -1  # raised to the second request's priority


def test_compliance_refresh_without_a_tenant_defers_the_fan_out(api):
    response = api.post("jobs/compliance-refresh", {"triggeredBy": "document_upload:4711"})
    assert response.status_code == 201
    assert response.json()["name"] == "compliance.refresh_all"
    assert ProcrastinateJob.objects.get().args == {"triggered_by": "document_upload:4711", "priority": None}


def test_compliance_refresh_without_a_tenant_twice_defers_two_jobs(api):
    first = api.post("jobs/compliance-refresh")
    second = api.post("jobs/compliance-refresh")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.parametrize(
    ("path", "task", "queue"),
    [
        ("jobs/expiry-check", "notifications.check_expiry", "expiry-notification"),
        ("jobs/filing-reminder", "notifications.send_filing_reminders", "filing-reminder"),
    ],
)
def test_tenant_check_defers_the_tenants_job(api, tenant, path, task, queue):
    response = api.post(path, {"tenantId": tenant.pk})
    assert response.status_code == 201
    job = ProcrastinateJob.objects.get()
    assert response.json() == {"id": job.id, "queue": queue, "name": task}
    assert job.args == {"tenant_id": tenant.pk}


@pytest.mark.parametrize(
    ("path", "task"),
    [
        ("jobs/expiry-check", "notifications.check_expiry_all"),
        ("jobs/filing-reminder", "notifications.send_filing_reminders_all"),
    ],
)
def test_check_without_a_tenant_defers_the_fan_out(api, path, task):
    response = api.post(path, b"")
    assert response.status_code == 201
    assert response.json()["name"] == task
    assert response.json()["queue"] == "maintenance"


def test_email_stores_the_email_in_the_outbox_and_answers_its_id(api, tenant):
    response = api.post("jobs/email", {**EMAIL, "tenantId": tenant.pk})
    assert response.status_code == 201
    email = OutboundEmail.objects.get()
    assert response.json() == {"id": email.pk, "queue": "email", "name": "notifications.send_email"}
    assert not ProcrastinateJob.objects.exists()
    assert (email.to_email, email.to_name, email.template) == ("user@example.com", "John Doe", "compliance-alert")
    assert (email.context, email.status, email.priority) == (EMAIL["data"], "queued", 2)


def test_email_may_be_urgent(api, tenant):
    response = api.post("jobs/email", {**EMAIL, "tenantId": tenant.pk, "priority": "urgent"})
    assert response.status_code == 201
    assert OutboundEmail.objects.get(pk=response.json()["id"]).priority == 0


def test_an_unknown_priority_is_a_field_error(api, tenant):
    response = api.post("jobs/email", {**EMAIL, "tenantId": tenant.pk, "priority": "asap"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"priority": "must be one of urgent, high, normal, low, got 'asap'"}
    assert not OutboundEmail.objects.exists()


def test_the_email_id_tells_where_the_email_stands(api, tenant):
    email_id = api.post("jobs/email", {**EMAIL, "tenantId": tenant.pk}).json()["id"]
    response = api.get(f"emails/{email_id}")
    assert response.status_code == 200
    state = response.json()
    assert (state["id"], state["status"], state["priority"], state["attempts"]) == (email_id, "queued", "normal", 0)
    assert (state["deliveryUnknown"], state["sentAt"], state["tenantId"]) == (False, None, tenant.pk)


def test_an_unknown_email_id_is_not_found(api):
    assert api.get("emails/987654321").status_code == 404
    assert api.get(f"emails/{2**64}").status_code == 404


@pytest.mark.parametrize(
    ("path", "task"),
    [
        ("jobs/compliance-refresh", "compliance.refresh_tenant"),
        ("jobs/expiry-check", "notifications.check_expiry"),
        ("jobs/filing-reminder", "notifications.send_filing_reminders"),
    ],
)
def test_a_tenant_slug_is_taken_for_its_id(api, tenant, path, task):
    response = api.post(path, {"tenantId": tenant.slug})
    assert response.status_code == 201
    job = ProcrastinateJob.objects.get(pk=response.json()["id"])
    assert (job.task_name, job.args["tenant_id"]) == (task, tenant.pk)


def test_an_unknown_tenant_slug_is_not_found(api):
    response = api.post("jobs/expiry-check", {"tenantId": "no-such-firm"})
    assert response.status_code == 404
    assert "no-such-firm" in response.json()["error"]


def test_inactive_tenant_is_unknown(api):
    tenant = TenantFactory(is_active=False)
    response = api.post("jobs/expiry-check", {"tenantId": tenant.pk})
    assert response.status_code == 404
    assert not ProcrastinateJob.objects.exists()
