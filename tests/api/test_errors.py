"""Refused requests: the right status and message, and nothing enqueued."""

from __future__ import annotations

import pytest
from django.test import override_settings

from kgc.api import parsing
from notifications.models import OutboundEmail
from tests.api.conftest import OLD_TOKEN, TOKEN, ApiClient

EMAIL = {
    "recipientEmail": "user@example.com",
    "recipientName": "John Doe",
    "subject": "Compliance Alert",
    "template": "custom",
    "data": {"body": "Hello"},
}
ROUTES = [
    ("post", "jobs/compliance-refresh"),
    ("post", "jobs/expiry-check"),
    ("post", "jobs/filing-reminder"),
    ("post", "jobs/email"),
    ("get", "queues"),
    ("get", "queues/email"),
    ("post", "queues/email/pause"),
    ("post", "queues/email/resume"),
    ("post", "queues/email/cleanup"),
]


def call(client: ApiClient, method: str, path: str):
    return client.get(path) if method == "get" else client.post(path, {})


# --- 401 ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_request_without_a_token_is_refused(api_tokens, jobs_table, method, path):
    response = call(ApiClient(None), method, path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="kgc-jobs"'
    assert "Authorization: Bearer" in response.json()["error"]
    assert jobs_table() == []


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_request_with_a_wrong_token_is_refused(api_tokens, jobs_table, method, path):
    response = call(ApiClient(TOKEN + "x"), method, path)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert jobs_table() == []


@pytest.mark.django_db
def test_basic_auth_is_not_a_bearer_token(api_tokens):
    response = ApiClient(None).client.get("/api/v1/queues", headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status_code == 401


@pytest.mark.django_db
@override_settings(KGC_API_TOKENS=[])
def test_without_configured_tokens_every_request_is_refused(jobs_table):
    response = ApiClient(TOKEN).post("jobs/expiry-check")
    assert response.status_code == 401
    assert "no API tokens are configured" in response.json()["error"]
    assert jobs_table() == []


@pytest.mark.django_db
def test_previous_token_still_works_during_rotation(api_tokens):
    assert ApiClient(OLD_TOKEN).get("queues").status_code == 200


def test_openapi_description_needs_no_token(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


# --- 400 and 404: nothing enqueued ---------------------------------------------------------


REFUSED = [
    # (path, body, status, errors)
    ("jobs/compliance-refresh", b"{not json", 400, {}),
    ("jobs/compliance-refresh", b"[1]", 400, {}),
    ("jobs/compliance-refresh", {"tenantId": "no-such-firm"}, 404, {}),
    ("jobs/compliance-refresh", {"tenantId": []}, 400, {"tenantId": "must be an integer"}),
    ("jobs/compliance-refresh", {"TENANT": 1}, 400, {"TENANT": "unknown field"}),
    ("jobs/compliance-refresh", {"tenantId": 999999}, 404, {}),
    ("jobs/expiry-check", {"tenantId": 999999}, 404, {}),
    ("jobs/filing-reminder", {"tenantId": 999999}, 404, {}),
    ("jobs/filing-reminder", {"tenantId": 0}, 400, {"tenantId": f"must be from 1 to {parsing.MAX_ID}"}),
    ("jobs/email", {**EMAIL, "tenantId": 999999}, 404, {}),
    ("jobs/email", {**EMAIL}, 400, {"tenantId": "is required"}),
    ("queues/maintenance/pause", {}, 404, {}),
    ("queues/nope/cleanup", {"completedAge": 0}, 404, {}),
    ("queues/email/cleanup", {"completedAge": -1}, 400, {"completedAge": f"must be from 0 to {parsing.MAX_AGE_MS}"}),
    ("queues/email/pause", {"force": True}, 400, {"force": "unknown field"}),
]


@pytest.mark.parametrize(("path", "body", "status", "errors"), REFUSED)
def test_refused_request_answers_its_status_and_enqueues_nothing(api, jobs_table, path, body, status, errors):
    response = api.post(path, body)
    assert response.status_code == status
    assert response.json()["errors"] == errors
    assert response.json()["error"]
    assert jobs_table() == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"priority": 0}, {"priority": "must be a whole number from 1 (highest) to 1000000, got 0"}),
        ({"triggeredBy": "  "}, {"triggeredBy": "must be a non-empty string of at most 64 characters"}),
        ({"triggeredBy": "x" * 65}, {"triggeredBy": "must be a non-empty string of at most 64 characters"}),
    ],
)
def test_refresh_rules_of_the_queue_layer_answer_per_field(api, tenant, jobs_table, body, errors):
    response = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, **body})
    assert response.status_code == 400
    assert response.json()["errors"] == errors
    assert jobs_table() == []


def test_a_refresh_triggered_by_an_unknown_source_is_refused(api, tenant, jobs_table):
    response = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, "triggeredBy": "bogus"})
    assert response.status_code == 400
    assert response.json()["errors"]["triggeredBy"].startswith("must be one of manual, schedule, document_upload")
    assert "got 'bogus'" in response.json()["errors"]["triggeredBy"]
    assert jobs_table() == []


@pytest.mark.parametrize(
    "triggered_by", ["manual", "document_upload", "filing_update:Q3 VAT", "manual:ana@firm.example"]
)
def test_a_refresh_names_why_it_was_asked_for(api, tenant, triggered_by):
    response = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, "triggeredBy": triggered_by})
    assert response.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"triggeredBy": "bogus", "priority": 0},
        {"triggeredBy": "bogus", "priority": "high"},
        {"triggeredBy": "", "priority": 10**7},
    ],
)
def test_every_bad_field_of_a_refresh_is_named_at_once(api, tenant, jobs_table, body):
    response = api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, **body})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"triggeredBy", "priority"}
    assert jobs_table() == []


def test_python_callers_also_hear_of_every_bad_argument_at_once(tenant):
    from kgc.job_helpers import InvalidRefreshRequest, enqueue_compliance_refresh

    with pytest.raises(InvalidRefreshRequest) as refused:
        enqueue_compliance_refresh(tenant.pk, triggered_by="bogus", priority=0)
    assert set(refused.value.errors) == {"triggered_by", "priority"}


@pytest.mark.parametrize(
    ("tenant_id", "message"),
    [(999999, "no tenant with id 999999"), ("no-such-firm", "no tenant with slug 'no-such-firm'")],
)
def test_an_unknown_tenant_is_called_unknown(api, tenant_id, message):
    response = api.post("jobs/expiry-check", {"tenantId": tenant_id})
    assert (response.status_code, response.json()["error"]) == (404, message)


@pytest.mark.parametrize("reference", ["slug", "pk"])
def test_an_inactive_tenant_is_called_inactive(api, reference):
    from tests.factories import TenantFactory

    closed = TenantFactory(slug="closed-firm", is_active=False)
    tenant_id = getattr(closed, reference)
    response = api.post("jobs/expiry-check", {"tenantId": tenant_id})
    assert (response.status_code, response.json()["error"]) == (404, f"tenant {tenant_id!r} is inactive")


def test_email_errors_are_named_in_camel_case(api, tenant, jobs_table):
    body = {
        **EMAIL,
        "recipientEmail": "not-an-address",
        "recipientName": "A\nB",
        "template": "nope",
        "tenantId": tenant.pk,
    }
    response = api.post("jobs/email", body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"recipientEmail", "recipientName", "template"}
    assert jobs_table() == []
    assert not OutboundEmail.objects.exists()


def test_email_with_a_nul_character_in_its_data_is_refused(api, tenant, jobs_table):
    response = api.post("jobs/email", {**EMAIL, "data": {"body": "a\x00b"}, "tenantId": tenant.pk})
    assert response.status_code == 400
    assert response.json()["errors"] == {"data": "must not contain NUL characters"}
    assert jobs_table() == []


def test_refresh_for_a_tenant_with_one_waiting_is_refused_without_touching_it(api, tenant, jobs_table):
    api.post("jobs/compliance-refresh", {"tenantId": tenant.pk})
    before = jobs_table()
    assert api.post("jobs/compliance-refresh", {"tenantId": tenant.pk, "priority": 0}).status_code == 400
    assert jobs_table() == before


# --- 405, 411, 413, unknown routes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("get", "jobs/expiry-check", "POST"),
        ("put", "jobs/email", "POST"),
        ("post", "queues", "GET"),
        ("delete", "queues/email", "GET"),
        ("get", "queues/email/pause", "POST"),
    ],
)
def test_wrong_method_answers_405_with_allow(api, jobs_table, method, path, allow):
    response = getattr(api.client, method)(f"/api/v1/{path}")
    assert response.status_code == 405
    assert response["Allow"] == allow
    assert jobs_table() == []


def test_body_over_64_kib_answers_413(api, tenant, jobs_table):
    body = {**EMAIL, "tenantId": tenant.pk, "data": {"text": "x" * parsing.MAX_BODY_BYTES}}
    response = api.post("jobs/email", body)
    assert response.status_code == 413
    assert jobs_table() == []


def test_declared_length_over_64_kib_answers_413_before_reading(api, jobs_table):
    response = api.post("jobs/expiry-check", b"{}", CONTENT_LENGTH=str(parsing.MAX_BODY_BYTES + 1))
    assert response.status_code == 413


def test_body_of_exactly_64_kib_is_read(api, tenant):
    padding = parsing.MAX_BODY_BYTES - len(f'{{"tenantId": {tenant.pk}}}')
    raw = f'{{"tenantId": {tenant.pk}}}'.encode() + b" " * padding
    assert len(raw) == parsing.MAX_BODY_BYTES
    assert api.post("jobs/expiry-check", raw).status_code == 201


def test_chunked_body_without_length_answers_411(api, jobs_table):
    response = api.post("jobs/expiry-check", b"", HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH="")
    assert response.status_code == 411
    assert jobs_table() == []


def test_unknown_route_answers_json_404(api):
    response = api.get("jobs")
    assert response.status_code == 404
    assert response.json()["error"] == "no such API route: /api/v1/jobs"
